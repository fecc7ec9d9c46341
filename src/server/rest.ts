/** POST /v1/images/edits (being built: issue 4). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { InferenceEngine } from '../inference/engine.js';
import type { JobService } from '../jobs/jobService.js';
import type { EditService, UploadLimits } from '../jobs/editService.js';

export interface RestDeps {
  engine: InferenceEngine;
  jobs: JobService;
  edits: EditService;
  log: Logger;
  maxBodyBytes: number;
  uploadLimits: UploadLimits;
}

export async function handleRestEdit(_req: IncomingMessage, res: ServerResponse, _deps: RestDeps): Promise<void> {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message: 'not available yet', type: 'invalid_request_error', code: 'NOT_FOUND' } }));
}
