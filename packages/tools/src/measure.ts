/**
 * Timing and peak memory of a child process, measured the same way for every contender (ours,
 * psql, pg_recvlogical): wall time from spawn to exit, and the peak resident set size read from
 * /proc/<pid>/status (VmHWM) while it runs.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';

export interface ProcessRun {
  seconds: number;
  peakRssMb: number;
  stderr: string;
}

export function runMeasured(
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const devNull = openSync('/dev/null', 'w');
    const started = performance.now();
    const child = spawn(command, args, {
      stdio: ['ignore', devNull, 'pipe'],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    let peakKb = 0;
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const poll = setInterval(() => {
      peakKb = Math.max(peakKb, highWaterMarkKb(child.pid));
    }, 10);
    child.on('error', (error) => {
      clearInterval(poll);
      reject(error);
    });
    child.on('exit', (code) => {
      clearInterval(poll);
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${stderr}`));
        return;
      }
      resolve({ seconds, peakRssMb: peakKb / 1024, stderr });
    });
  });
}

function highWaterMarkKb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
