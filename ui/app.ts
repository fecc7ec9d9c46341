// The live progress page: the public GraphQL API over fetch (queries, mutations, multipart
// uploads) and graphql-ws's client (subscriptions, with reconnect and resubscription), with the
// operations and types codegen generates from ui/operations.graphql.
import { type Client, createClient } from 'graphql-ws/client';
import {
  PageCancelEditJobDocument,
  PageEditImagesDocument,
  type PageEditImagesMutation,
  type PageEditImagesMutationVariables,
  PageEditJobEventsDocument,
  type PageEditJobEventsSubscription,
  PageModelsDocument,
  type PageModelsQuery,
  type TypedDocumentString,
} from './generated/graphql.js';

type ModelInfo = PageModelsQuery['models'][number];
type JobEvent = PageEditJobEventsSubscription['editJobEvents'];
type GraphQLErrors = readonly { message: string; extensions?: { code?: unknown } }[];

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const tokenInput = $<HTMLInputElement>('token');
tokenInput.value = sessionStorage.getItem('token') ?? '';
const authHeader = (): Record<string, string> => (tokenInput.value ? { authorization: `Bearer ${tokenInput.value}` } : {});

class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

const firstError = (errors: GraphQLErrors): ApiError => new ApiError(errors[0]!.message, String(errors[0]!.extensions?.code ?? 'ERROR'));

async function readGraphQL<R>(res: Response): Promise<R> {
  if (res.status === 401) {
    $<HTMLDetailsElement>('auth').open = true;
    throw new ApiError('This server needs an access token: enter it under "Access token".', 'UNAUTHENTICATED');
  }
  const body = (await res.json()) as { data?: R; errors?: GraphQLErrors };
  if (body.errors?.length) throw firstError(body.errors);
  return body.data!;
}

async function graphql<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R> {
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeader() },
    body: JSON.stringify({ query: document.toString(), variables }),
  });
  return readGraphQL<R>(res);
}

// --- graphql-ws ------------------------------------------------------------------------------
const setConnection = (text: string): void => {
  $('connection').textContent = text;
};
/** Close codes the server uses for bad credentials (fatal for graphql-ws: no retry). */
const AUTH_CLOSE_CODES = [4401, 4403];
/** A close code of our own that graphql-ws retries: reconnect with the new token. */
const RESTART_CLOSE_CODE = 4205;
/** Subscriptions cut by a refused token: they resubscribe once the token changes. */
const awaitingToken = new Set<() => void>();
let openSocket: WebSocket | null = null;

// Lazy: connected while a job card listens. The server sends each job's current state first, so
// cards resume after a reconnect.
const socket: Client = createClient({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
  connectionParams: () => authHeader(),
  retryAttempts: Number.POSITIVE_INFINITY,
  shouldRetry: (event) => !(event instanceof CloseEvent && AUTH_CLOSE_CODES.includes(event.code)),
  retryWait: async (retries) => {
    const delay = Math.min(10_000, 500 * 2 ** retries);
    setConnection(`Connection lost; reconnecting in ${Math.round(delay / 1000)} s…`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  },
  on: {
    opened: (ws) => {
      openSocket = ws as WebSocket;
    },
    connected: () => setConnection(''),
    closed: (event) => {
      openSocket = null;
      if (event instanceof CloseEvent && AUTH_CLOSE_CODES.includes(event.code)) {
        $<HTMLDetailsElement>('auth').open = true;
        setConnection('Live updates need a valid access token.');
      }
    },
  },
});

tokenInput.addEventListener('change', () => {
  sessionStorage.setItem('token', tokenInput.value);
  openSocket?.close(RESTART_CLOSE_CODE, 'New access token');
  for (const resubscribe of awaitingToken) resubscribe();
  awaitingToken.clear();
});

interface JobSink {
  next(event: JobEvent): void;
  complete(): void;
  error(code: string, message: string): void;
}

/** The job's events until it ends; through reconnects, and across a token change after a refusal. */
function watchJob(id: string, sink: JobSink): void {
  socket.subscribe<PageEditJobEventsSubscription>(
    { query: PageEditJobEventsDocument.toString(), variables: { id } },
    {
      next: (result) => {
        if (result.errors?.length) {
          const e = firstError(result.errors);
          sink.error(e.code, e.message);
        } else if (result.data) sink.next(result.data.editJobEvents);
      },
      complete: () => sink.complete(),
      error: (err) => {
        if (err instanceof CloseEvent && AUTH_CLOSE_CODES.includes(err.code)) awaitingToken.add(() => watchJob(id, sink));
        else if (Array.isArray(err) && err.length) {
          const e = firstError(err as GraphQLErrors);
          sink.error(e.code, e.message);
        } else sink.error('ERROR', err instanceof CloseEvent ? `connection closed (${err.code})` : 'subscription failed');
      },
    },
  );
}

// --- masks -------------------------------------------------------------------------------
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * An 8-bit greyscale PNG (colour type 0, no alpha). The canvas's own encoder writes RGBA, and the
 * server reads a mask with an alpha channel by its alpha, so the page writes the PNG itself.
 */
async function greyPng(grey: Uint8Array, width: number, height: number): Promise<Blob> {
  const rows = new Uint8Array((width + 1) * height); // filter byte 0 (none) before each row
  for (let y = 0; y < height; y++) rows.set(grey.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(await new Response(new Blob([rows]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, greyscale, deflate, adaptive filtering, no interlace
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, pngChunk('IHDR', header), pngChunk('IDAT', zlib), pngChunk('IEND', new Uint8Array(0))], { type: 'image/png' });
}

/**
 * The mask painted over one selected image: a canvas at the image's natural size, scaled with it
 * for display. Painted pixels are opaque (shown as a translucent overlay); the mask sent is their
 * alpha as grey, so white = painted = edited, black = kept. Pointer Events: mouse, pen and touch.
 */
const MASK_VIEW_HEIGHT = 280;

class MaskEditor {
  readonly el = document.createElement('div');
  readonly canvas = document.createElement('canvas');
  private ctx: CanvasRenderingContext2D;
  private tool: 'brush' | 'eraser' = 'brush';
  private last: { x: number; y: number } | null = null;
  /** The pointer drawing the current stroke; a second finger or pen is ignored until it ends. */
  private pointer: number | null = null;
  private readonly size = document.createElement('input');
  private readonly show = document.createElement('input');
  private readonly toolButtons: Record<'brush' | 'eraser', HTMLButtonElement>;

  constructor(
    readonly img: HTMLImageElement,
    i: number,
    name: string,
  ) {
    this.ctx = this.canvas.getContext('2d')!;
    this.canvas.className = 'mask';
    this.canvas.setAttribute('aria-label', `Mask for ${name}: paint where the image should change`);
    this.canvas.width = 0;
    this.canvas.height = 0;
    const stage = document.createElement('div');
    stage.className = 'mask-stage';
    stage.append(img, this.canvas);
    const fit = (): void => {
      this.canvas.width = img.naturalWidth;
      this.canvas.height = img.naturalHeight;
      // As wide as the form allows, at most MASK_VIEW_HEIGHT tall; small images are scaled up.
      stage.style.width = `min(100%, ${Math.round((MASK_VIEW_HEIGHT * img.naturalWidth) / img.naturalHeight)}px)`;
      this.el.classList.add('ready');
    };
    if (img.complete && img.naturalWidth) fit();
    else img.addEventListener('load', fit, { once: true });

    const tools = document.createElement('div');
    tools.className = 'mask-tools';
    tools.setAttribute('role', 'toolbar');
    tools.setAttribute('aria-label', `Mask tools for ${name}`);
    const button = (tool: 'brush' | 'eraser', text: string): HTMLButtonElement => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary tool';
      b.dataset.tool = tool;
      b.textContent = text;
      b.addEventListener('click', () => this.setTool(tool));
      return b;
    };
    this.toolButtons = { brush: button('brush', 'Brush'), eraser: button('eraser', 'Eraser') };
    const sizeLabel = document.createElement('label');
    sizeLabel.htmlFor = `mask-size-${i}`;
    sizeLabel.textContent = 'Size';
    this.size.type = 'range';
    this.size.id = `mask-size-${i}`;
    this.size.className = 'mask-size';
    this.size.min = '2';
    this.size.max = '120';
    this.size.value = '24';
    this.size.title = 'Brush size in screen pixels';
    const clear = document.createElement('button');
    clear.type = 'button';
    clear.className = 'secondary mask-clear';
    clear.textContent = 'Clear';
    clear.addEventListener('click', () => this.clear());
    const showLabel = document.createElement('label');
    showLabel.className = 'check';
    this.show.type = 'checkbox';
    this.show.className = 'mask-show';
    this.show.checked = true;
    this.show.addEventListener('change', () => this.canvas.classList.toggle('hidden', !this.show.checked));
    showLabel.append(this.show, ' Show mask');
    tools.append(this.toolButtons.brush, this.toolButtons.eraser, sizeLabel, this.size, clear, showLabel);
    this.setTool('brush');

    this.el.className = 'mask-editor';
    this.el.append(stage, tools);

    this.canvas.addEventListener('pointerdown', (e) => this.down(e));
    this.canvas.addEventListener('pointermove', (e) => this.move(e));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture'] as const) {
      this.canvas.addEventListener(type, (e) => {
        if (e.pointerId !== this.pointer) return;
        this.pointer = null;
        this.last = null;
      });
    }
  }

  setTool(tool: 'brush' | 'eraser'): void {
    this.tool = tool;
    for (const [t, b] of Object.entries(this.toolButtons)) b.setAttribute('aria-pressed', String(t === tool));
  }

  clear(): void {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** A pointer position in the canvas's (natural-size) pixels, and screen pixels' scale there. */
  private point(e: PointerEvent): { x: number; y: number; scale: number } {
    const r = this.canvas.getBoundingClientRect();
    const scale = this.canvas.width / r.width;
    return { x: (e.clientX - r.left) * scale, y: (e.clientY - r.top) * (this.canvas.height / r.height), scale };
  }

  private down(e: PointerEvent): void {
    if (e.button !== 0 || !this.canvas.width || this.pointer !== null) return;
    e.preventDefault();
    this.pointer = e.pointerId;
    this.canvas.setPointerCapture(e.pointerId);
    const p = this.point(e);
    this.last = p;
    this.stroke(p, p, p.scale);
  }

  private move(e: PointerEvent): void {
    if (!this.last || e.pointerId !== this.pointer) return;
    // Every sample since the last frame, so fast strokes stay smooth (secure contexts only).
    const samples = e.getCoalescedEvents?.() ?? [];
    for (const sample of samples.length ? samples : [e]) {
      const p = this.point(sample);
      this.stroke(this.last, p, p.scale);
      this.last = p;
    }
  }

  private stroke(from: { x: number; y: number }, to: { x: number; y: number }, scale: number): void {
    const c = this.ctx;
    c.globalCompositeOperation = this.tool === 'eraser' ? 'destination-out' : 'source-over';
    c.strokeStyle = '#e000ff'; // any opaque colour: only alpha is sent
    c.lineWidth = Number(this.size.value) * scale;
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(from.x, from.y);
    c.lineTo(to.x, to.y);
    c.stroke();
  }

  /** The mask as a greyscale PNG of the image's natural size, or null when nothing is painted. */
  async toPng(): Promise<Blob | null> {
    const { width, height } = this.canvas;
    if (!width || !height) return null;
    const rgba = this.ctx.getImageData(0, 0, width, height).data;
    const grey = new Uint8Array(width * height);
    let any = false;
    for (let i = 0; i < grey.length; i++) {
      const a = rgba[i * 4 + 3]!;
      grey[i] = a;
      if (a) any = true;
    }
    return any ? greyPng(grey, width, height) : null;
  }
}

// --- the form -----------------------------------------------------------------------------
let files: File[] = [];
let fileUrls: string[] = [];
let editors: MaskEditor[] = [];
let models: ModelInfo[] = [];
const thumbs = $<HTMLUListElement>('thumbs');

function setFiles(list: FileList | File[]): void {
  files = [...list];
  fileUrls = files.map((f) => URL.createObjectURL(f));
  editors = [];
  thumbs.replaceChildren(
    ...files.map((file, i) => {
      const li = document.createElement('li');
      const img = document.createElement('img');
      img.src = fileUrls[i]!;
      img.alt = file.name;
      const editor = new MaskEditor(img, i, file.name);
      editors.push(editor);
      const label = document.createElement('label');
      label.htmlFor = `prompt-${i}`;
      label.textContent = `Instruction for ${file.name} (optional)`;
      const input = document.createElement('input');
      input.type = 'text';
      input.id = `prompt-${i}`;
      input.className = 'image-prompt';
      li.append(editor.el, label, input);
      return li;
    }),
  );
}

const fileInput = $<HTMLInputElement>('files');
fileInput.addEventListener('change', () => setFiles(fileInput.files ?? []));
const zone = $('drop-zone');
zone.addEventListener('dragover', (e) => {
  e.preventDefault();
  zone.classList.add('over');
});
zone.addEventListener('dragleave', () => zone.classList.remove('over'));
zone.addEventListener('drop', (e) => {
  e.preventDefault();
  zone.classList.remove('over');
  if (e.dataTransfer?.files.length) setFiles(e.dataTransfer.files);
});
zone.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    fileInput.click();
  }
});

function applyModelDefaults(): void {
  const model = models.find((m) => m.id === $<HTMLSelectElement>('model').value);
  if (!model) return;
  $<HTMLInputElement>('steps').placeholder = String(model.defaults.steps);
  $<HTMLInputElement>('size').placeholder = `${model.defaults.size} or auto`;
  $<HTMLSelectElement>('scheduler').options[0]!.textContent = `model default (${model.defaults.scheduler})`;
}

async function loadModels(): Promise<void> {
  try {
    models = (await graphql(PageModelsDocument, {})).models;
    const select = $<HTMLSelectElement>('model');
    select.replaceChildren(
      ...models.map((m) => {
        // A model whose folder cannot be served is shown, greyed out, with the reason on hover.
        const option = new Option(m.id + (m.isDefault ? ' (default)' : '') + (m.error ? ' (unavailable)' : ''), m.id, m.isDefault, m.isDefault);
        option.disabled = m.error !== null;
        if (m.error) option.title = m.error;
        return option;
      }),
    );
    applyModelDefaults();
  } catch (err) {
    $('form-status').textContent = (err as Error).message;
  }
}
$<HTMLSelectElement>('model').addEventListener('change', applyModelDefaults);

const optionalInt = (id: string): number | null => {
  const v = $<HTMLInputElement>(id).value.trim();
  return v === '' ? null : Number(v);
};

$<HTMLFormElement>('edit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const status = $('form-status');
  if (files.length === 0) {
    status.textContent = 'Choose at least one image first.';
    return;
  }
  const steps = optionalInt('steps') ?? models.find((m) => m.id === $<HTMLSelectElement>('model').value)?.defaults.steps ?? 20;
  const perImage = [...document.querySelectorAll<HTMLInputElement>('.image-prompt')].map((i) => i.value.trim());
  const prompt = $<HTMLInputElement>('prompt').value;
  const variables: PageEditImagesMutationVariables = {
    images: files.map(() => null),
    masks: null,
    maskBlur: optionalInt('mask-blur'),
    prompt,
    prompts: perImage.some(Boolean) ? perImage.map((p) => p || prompt) : null,
    model: $<HTMLSelectElement>('model').value || null,
    n: optionalInt('n') ?? 1,
    steps: optionalInt('steps'),
    size: $<HTMLInputElement>('size').value.trim() || null,
    seed: optionalInt('seed'),
    scheduler: ($<HTMLSelectElement>('scheduler').value || null) as PageEditImagesMutationVariables['scheduler'],
    previewEvery: Math.max(1, Math.round(steps / 5)),
  };
  const jobFiles = files;
  const jobUrls = fileUrls;
  $<HTMLButtonElement>('start').disabled = true;
  status.textContent = 'Uploading…';
  try {
    // One mask per image in upload order, null where nothing is painted; no list when none is.
    const masks = await Promise.all(editors.map((m) => m.toPng()));
    const map: Record<string, string[]> = Object.fromEntries(jobFiles.map((_, i) => [String(i), [`variables.images.${i}`]]));
    const form = new FormData();
    if (masks.some(Boolean)) {
      variables.masks = masks.map(() => null);
      masks.forEach((m, i) => {
        if (m) map[`m${i}`] = [`variables.masks.${i}`];
      });
    }
    form.set('operations', JSON.stringify({ query: PageEditImagesDocument.toString(), variables }));
    form.set('map', JSON.stringify(map));
    jobFiles.forEach((f, i) => form.set(String(i), f, f.name));
    masks.forEach((m, i) => {
      if (m) form.set(`m${i}`, m, `mask-${i}.png`);
    });
    const data = await readGraphQL<PageEditImagesMutation>(
      await fetch('/graphql', { method: 'POST', body: form, headers: { 'apollo-require-preflight': 'true', ...authHeader() } }),
    );
    const job = data.editImages;
    status.textContent = 'Job started.';
    new JobCard(
      job.id,
      jobFiles.map((f) => f.name),
      Number(variables.n),
      jobUrls,
    );
  } catch (err) {
    const code = err instanceof ApiError ? err.code : 'ERROR';
    status.textContent = `Could not start: ${(err as Error).message} (${code})`;
  } finally {
    $<HTMLButtonElement>('start').disabled = false;
  }
});

// --- job cards ----------------------------------------------------------------------------
class JobCard {
  private el = document.createElement('article');
  private state = document.createElement('span');
  private bar = document.createElement('progress');
  private detail = document.createElement('p');
  private outputs = document.createElement('div');
  private cancel = document.createElement('button');
  /** The first progress event seen, and when: the ETA is timed from it. */
  private firstStep = 0;
  private firstStepAt = 0;
  private done = false;

  constructor(
    private readonly id: string,
    private readonly names: string[],
    private readonly n: number,
    private readonly inputs: string[],
  ) {
    this.el.className = 'job';
    this.el.setAttribute('aria-label', `Job ${id.slice(0, 8)}`);
    const header = document.createElement('header');
    const title = document.createElement('h3');
    title.textContent = `${names.length} image${names.length > 1 ? 's' : ''} × ${n} · job ${id.slice(0, 8)}`;
    this.cancel.type = 'button';
    this.cancel.className = 'secondary';
    this.cancel.textContent = 'Cancel';
    this.cancel.addEventListener('click', () => void this.requestCancel());
    header.append(title, this.cancel);
    this.state.className = 'state';
    this.state.setAttribute('role', 'status');
    this.state.setAttribute('aria-live', 'polite');
    this.bar.max = 1;
    this.bar.value = 0;
    this.bar.setAttribute('aria-label', 'Denoising progress');
    this.bar.setAttribute('aria-valuemin', '0');
    this.bar.setAttribute('aria-valuenow', '0');
    this.outputs.className = 'outputs';
    this.el.append(header, this.state, this.bar, this.detail, this.outputs);
    $('jobs').prepend(this.el);
    this.setState('QUEUED', 'Queued');
    watchJob(id, { next: (e) => this.onEvent(e), complete: () => this.onComplete(), error: (code, message) => this.fail(code, message) });
  }

  private setState(status: string, text: string): void {
    this.state.className = `state ${status}`;
    this.state.textContent = text;
  }

  private figure(index: number): HTMLElement {
    let fig = this.outputs.querySelector<HTMLElement>(`[data-index="${index}"]`);
    if (!fig) {
      fig = document.createElement('figure');
      fig.dataset.index = String(index);
      const img = document.createElement('img');
      const caption = document.createElement('figcaption');
      const inputIndex = Math.floor(index / this.n);
      img.alt = `Output ${index}: ${this.names[inputIndex] ?? 'image'} variant ${index % this.n}`;
      caption.textContent = `${this.names[inputIndex] ?? ''} · variant ${index % this.n}`;
      fig.append(img, caption);
      this.outputs.append(fig);
    }
    return fig;
  }

  private onEvent(e: JobEvent): void {
    if (e.__typename === 'EditQueued') {
      this.setState('QUEUED', `Queued: position ${e.position}`);
    } else if (e.__typename === 'EditProgress' && e.phase === 'LOADING_MODEL') {
      this.setState('RUNNING', 'Loading the model…');
    } else if (e.__typename === 'EditProgress') {
      const step = e.step;
      const total = e.totalSteps;
      this.bar.max = total;
      this.bar.value = step;
      this.bar.setAttribute('aria-valuemax', String(total));
      this.bar.setAttribute('aria-valuenow', String(step));
      if (!this.firstStepAt) {
        this.firstStep = step;
        this.firstStepAt = performance.now();
      }
      // No estimate until two steps have been timed.
      const timed = step - this.firstStep;
      const eta = ((performance.now() - this.firstStepAt) / 1000 / timed) * (total - step);
      this.setState('RUNNING', 'Running');
      this.detail.textContent = timed >= 2 ? `Step ${step}/${total} · about ${eta.toFixed(1)} s left` : `Step ${step}/${total}`;
      for (const p of e.previews) {
        const img = this.figure(p.index).querySelector('img')!;
        img.src = `data:${p.mimeType};base64,${p.b64Json}`;
        img.classList.add('preview');
      }
    } else if (e.__typename === 'EditCompleted') {
      this.finish();
      const r = e.result;
      this.bar.value = this.bar.max;
      this.bar.setAttribute('aria-valuenow', String(this.bar.max));
      this.setState('SUCCEEDED', 'Done');
      const u = r.usage;
      this.detail.className = 'usage';
      this.detail.textContent = `${u.inputImages} input → ${u.generatedImages} images in ${u.processingTimeSeconds.toFixed(2)} s (queued ${u.queueTimeSeconds.toFixed(2)} s, ${u.batches} batch${u.batches > 1 ? 'es' : ''})`;
      for (const image of r.images) {
        const fig = this.figure(image.index);
        const img = fig.querySelector('img')!;
        const src = `data:${image.mimeType};base64,${image.b64Json}`;
        img.src = src;
        img.classList.remove('preview');
        img.classList.add('result');
        const ext = image.mimeType.split('/')[1]?.replace('jpeg', 'jpg') ?? 'png';
        const stem = (this.names[image.inputIndex] ?? 'image').replace(/\.[^.]+$/, '');
        const link = document.createElement('a');
        link.href = src;
        link.download = `${stem}-${image.variant}.${ext}`;
        link.textContent = `Download (seed ${image.seed})`;
        fig.querySelector('figcaption')!.replaceChildren(`${stem} · variant ${image.variant} · ${image.width}×${image.height} · `, link);
        const input = this.inputs[image.inputIndex];
        if (input) this.addComparison(fig, img, input, `${stem} variant ${image.variant}`);
      }
    } else if (e.__typename === 'EditFailed') {
      this.fail(e.error.code, e.error.message);
    } else if (e.__typename === 'EditCancelled') {
      this.finish();
      this.setState('CANCELLED', 'Cancelled');
      this.detail.textContent = 'The job was cancelled.';
    }
  }

  /**
   * Before/after: the input laid over the output, cropped to cover it as the server does, and
   * clipped to the left of a slider's handle (0: all output, 100: all input).
   */
  private addComparison(fig: HTMLElement, output: HTMLImageElement, inputUrl: string, what: string): void {
    if (fig.querySelector('.compare')) return;
    const wrap = document.createElement('div');
    wrap.className = 'compare';
    const before = document.createElement('img');
    before.className = 'before';
    before.src = inputUrl;
    before.alt = `Input of ${what}`;
    const handle = document.createElement('div');
    handle.className = 'divider';
    output.replaceWith(wrap);
    wrap.append(output, before, handle);
    const slider = document.createElement('input');
    slider.type = 'range';
    slider.className = 'compare-slider';
    slider.min = '0';
    slider.max = '100';
    slider.value = '0';
    slider.setAttribute('aria-label', `Before and after for ${what}: the input shows left of the handle`);
    const apply = (): void => {
      const v = Number(slider.value);
      before.style.clipPath = `inset(0 ${100 - v}% 0 0)`;
      handle.style.left = `${v}%`;
      handle.hidden = v === 0 || v === 100;
    };
    slider.addEventListener('input', apply);
    apply();
    const label = document.createElement('label');
    label.className = 'compare-label';
    label.append('After ', slider, ' Before');
    wrap.after(label);
  }

  private onComplete(): void {
    this.finish();
  }

  private finish(): void {
    this.done = true;
    this.cancel.disabled = true;
  }

  private fail(code: string, message: string): void {
    this.finish();
    this.setState('FAILED', 'Failed');
    this.detail.className = 'error';
    this.detail.textContent = `${message} (${code})`;
  }

  private async requestCancel(): Promise<void> {
    if (this.done) return;
    this.cancel.disabled = true;
    try {
      await graphql(PageCancelEditJobDocument, { id: this.id });
    } catch (err) {
      this.detail.textContent = `Could not cancel: ${(err as Error).message}`;
      this.cancel.disabled = false;
    }
  }
}

void loadModels();
