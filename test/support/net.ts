/** Networking helpers: a free loopback port for servers the tests start as separate processes; curl. */
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** GET `url` with the curl binary (a real HTTP client, as users fetch result URLs): status, body and content type. */
export async function curl(url: string): Promise<{ status: number; body: Buffer; type: string }> {
  const { stdout } = await promisify(execFile)('curl', ['-s', '-o', '-', '-w', '\n%{http_code} %{content_type}', url], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  const cut = stdout.lastIndexOf(10);
  const [status, type] = stdout
    .subarray(cut + 1)
    .toString()
    .split(' ');
  return { status: Number(status), body: stdout.subarray(0, cut), type: type ?? '' };
}
