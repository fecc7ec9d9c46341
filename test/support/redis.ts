/** A throwaway redis-server for the Redis suites: loopback, no persistence, killed by the caller. */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

export function startRedisServer(port: number): ChildProcess {
  assert.equal(spawnSync('redis-server', ['--version']).status, 0, 'redis-server is not installed (Debian package redis-server; .ci/run installs it)');
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
}
