/** The progress page at / (not built yet: see issue 7). */
import type { IncomingMessage, ServerResponse } from 'node:http';

export function serveUi(_pathname: string, _req: IncomingMessage, _res: ServerResponse): boolean {
  return false;
}
