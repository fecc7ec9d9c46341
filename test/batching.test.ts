/** Cross-request batching: compatible queued jobs share one pipeline call, each keeping its own result. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse, postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { JobService } from '../src/jobs/jobService.js';
import type { JobEvent } from '../src/jobs/types.js';
import { defaultModelsDir } from '../src/config.js';

const SUBMIT =
  'mutation($images:[Upload!]!,$prompt:String!,$size:String,$steps:Int,$seed:Int,$n:Int){ editImages(images:$images, prompt:$prompt, size:$size, steps:$steps, seed:$seed, n:$n){ id status } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditProgress { step totalSteps } ... on EditCompleted { result { images { index seed b64Json } usage { mergedJobs batches steps generatedImages } } } } }';

type Ev = {
  editJobEvents: {
    __typename: string;
    step?: number;
    totalSteps?: number;
    result?: {
      images: { index: number; seed: number; b64Json: string }[];
      usage: { mergedJobs: number; batches: number; steps: number; generatedImages: number };
    };
  };
};

describe('cross-request batching', () => {
  let server: TestServer;
  let img: Buffer;
  let big: Buffer;
  before(async () => {
    server = await startTestServer();
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    big = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
  });
  after(async () => server.close());

  const submit = async (vars: Record<string, unknown>, files: Buffer[]): Promise<string> => {
    const res = await postMultipart<{ editImages: { id: string } }>(
      server.url,
      SUBMIT,
      vars,
      files.map((bytes, i) => ({ bytes, name: `${i}.png` })),
    );
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    return res.body.data!.editImages.id;
  };
  const events = async (id: string): Promise<Ev['editJobEvents'][]> => (await collectSse<Ev>(server.url, EVENTS, { id })).events.map((e) => e.editJobEvents);

  it('merges compatible queued jobs, keeps each job its own progress and images, and leaves incompatible ones alone', async () => {
    const blocker = await submit({ prompt: 'sepia', size: '512x512', steps: 40 }, [big, big, big]);
    const a = await submit({ prompt: 'invert', size: '32x32', steps: 5, seed: 5, n: 2 }, [img]);
    const b = await submit({ prompt: 'grayscale', size: '32x32', steps: 5, seed: 9 }, [img, img]);
    const c = await submit({ prompt: 'sepia', size: '32x32', steps: 3, seed: 1 }, [img]);
    const [evA, evB, evC] = await Promise.all([events(a), events(b), events(c)]);
    await events(blocker);
    const done = (ev: Ev['editJobEvents'][]) => ev[ev.length - 1]!.result!;
    assert.equal(done(evA).usage.mergedJobs, 2);
    assert.equal(done(evB).usage.mergedJobs, 2);
    assert.equal(done(evC).usage.mergedJobs, 1);
    assert.equal(done(evA).usage.generatedImages, 2);
    assert.equal(done(evB).usage.generatedImages, 2);
    for (const ev of [evA, evB]) {
      const steps = ev.filter((e) => e.__typename === 'EditProgress').map((e) => e.step);
      assert.deepEqual(
        steps,
        [...steps].sort((x, y) => x! - y!),
      );
      assert.equal(steps[steps.length - 1], 5);
    }
    // The same job alone gives the same images.
    const alone = await submit({ prompt: 'invert', size: '32x32', steps: 5, seed: 5, n: 2 }, [img]);
    const evAlone = await events(alone);
    assert.equal(done(evAlone).usage.mergedJobs, 1);
    assert.deepEqual(
      done(evAlone).images.map((i) => [i.seed, i.b64Json]),
      done(evA).images.map((i) => [i.seed, i.b64Json]),
    );
  });

  it('cancelling one job of a merged batch leaves the others running', async () => {
    const blocker = await submit({ prompt: 'sepia', size: '512x512', steps: 40 }, [big, big, big]);
    const a = await submit({ prompt: 'invert', size: '256x256', steps: 60 }, [big]);
    const b = await submit({ prompt: 'grayscale', size: '256x256', steps: 60 }, [big]);
    const evB = events(b);
    const evA = (async () => {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: EVENTS, variables: { id: a } }),
      });
      const seen: string[] = [];
      const decoder = new TextDecoder();
      let cancelled = false;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk);
        for (const m of text.matchAll(/"__typename":"(\w+)"(,"step":(\d+))?/g)) {
          seen.push(m[1]!);
          if (m[1] === 'EditProgress' && Number(m[3]) >= 2 && !cancelled) {
            cancelled = true;
            await postGraphQL(server.url, 'mutation($id: ID!){ cancelEditJob(id: $id){ status } }', { id: a });
          }
        }
        if (text.includes('event: complete')) break;
      }
      return seen;
    })();
    const seenA = await evA;
    assert.equal(seenA[seenA.length - 1], 'EditCancelled');
    const lastB = (await evB).at(-1)!;
    assert.equal(lastB.__typename, 'EditCompleted');
    assert.equal(lastB.result!.usage.mergedJobs, 2);
    await events(blocker);
  });

  it('exports queue, job and batch metrics at /metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /image_edit_queue_depth \d+/);
    assert.match(text, /image_edit_running_jobs \d+/);
    assert.match(text, /image_edit_denoise_steps_total [1-9]\d*/);
    assert.match(text, /image_edit_images_generated_total [1-9]\d*/);
    assert.match(text, /image_edit_jobs_per_pipeline_call_bucket\{le="2"\} [1-9]/);
    assert.match(text, /image_edit_jobs_finished_total\{status="CANCELLED"\} [1-9]/);
    assert.match(text, /image_edit_job_processing_seconds_count [1-9]/);
  });
});

describe('cross-request batching switched off', () => {
  it('runs compatible jobs one by one with MERGE_JOBS=0', async () => {
    const server = await startTestServer({ MERGE_JOBS: '0' });
    try {
      const img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
      const big = await twoColourPng(256, 256, [200, 60, 30], [20, 120, 220]);
      const submit = async (vars: Record<string, unknown>, files: Buffer[]): Promise<string> =>
        (
          await postMultipart<{ editImages: { id: string } }>(
            server.url,
            SUBMIT,
            vars,
            files.map((bytes, i) => ({ bytes, name: `${i}.png` })),
          )
        ).body.data!.editImages.id;
      await submit({ prompt: 'sepia', size: '256x256', steps: 30 }, [big, big]);
      const ids = [await submit({ prompt: 'invert', size: '32x32', steps: 3 }, [img]), await submit({ prompt: 'gray', size: '32x32', steps: 3 }, [img])];
      for (const id of ids) {
        const ev = (await collectSse<Ev>(server.url, EVENTS, { id })).events.map((e) => e.editJobEvents);
        assert.equal(ev.at(-1)!.result!.usage.mergedJobs, 1);
      }
    } finally {
      await server.close();
    }
  });
});

describe('the next group is handed over as the running one finishes denoising', () => {
  it('starts the next job before the running one has decoded, encoded and settled, and both give their own images', async () => {
    const engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'worker' });
    const order: string[] = [];
    const jobs = new JobService(engine, {
      retentionMs: 60_000,
      maxQueuedJobs: 10,
      jobTimeoutMs: 0,
      mergeJobs: false,
      log: (fields, message) => order.push(`${(fields as { jobId: string }).jobId} ${message}`),
    });
    try {
      const spec = engine.model('tiny-edit');
      const big = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
      const img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
      const edit = (steps: number, size: string) => resolveEditOptions(spec, 1, { prompt: 'sepia', size, steps, seed: 3 });
      const a = jobs.submit('tiny-edit', edit(3, '512x512'), [{ bytes: big }], 'anonymous');
      const b = jobs.submit('tiny-edit', edit(2, '32x32'), [{ bytes: img }], 'anonymous');
      const final = async (id: string) => {
        let last: JobEvent | null = null;
        for await (const event of await jobs.subscribe(id)) last = event;
        return last!;
      };
      const [endA, endB] = await Promise.all([final(a.id), final(b.id)]);
      assert.equal(endA.type, 'completed');
      assert.equal(endB.type, 'completed');
      // B is taken when A's last denoise step is reported, which comes before A's outputs exist.
      const at = (line: string) => order.indexOf(line);
      assert.ok(at(`${b.id} job running`) >= 0 && at(`${a.id} job succeeded`) >= 0, order.join('\n'));
      assert.ok(at(`${b.id} job running`) < at(`${a.id} job succeeded`), order.join('\n'));
      // Each has the image it gets alone.
      const alone = await engine.edit('tiny-edit', edit(2, '32x32'), [{ bytes: img }]);
      const png = (e: JobEvent) => Buffer.from((e as Extract<JobEvent, { type: 'completed' }>).result.images[0]!.bytes).toString('base64');
      assert.equal(png(endB), Buffer.from(alone.images[0]!.bytes).toString('base64'));
    } finally {
      await jobs.shutdown(0);
      await engine.close();
    }
  });
});
