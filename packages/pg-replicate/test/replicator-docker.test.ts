/**
 * The container files, checked without a Docker daemon (CI machines often have none): the
 * Dockerfile's structure (multi-stage, non-root, health check, exec-form entrypoint), that every
 * file it copies exists and is not excluded by `.dockerignore`, that its health check command
 * works, and that the compose sample's replicator config is valid against the schema. With
 * `hadolint` on the PATH it is linted too; with a reachable daemon the build stage is built.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@pg-replicate/testkit';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/replicator/config-loader.js';
import { tempDir } from './replicator-harness.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions with continuation lines joined, comments dropped, grouped by stage. */
function stages(): { name: string; from: string; instructions: Instruction[] }[] {
  const result: { name: string; from: string; instructions: Instruction[] }[] = [];
  const joined = dockerfile.replace(/\\\n\s*/g, ' ');
  for (const line of joined.split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) continue;
    const [keyword, ...rest] = text.split(/\s+/);
    const instruction = { keyword: keyword!.toUpperCase(), args: rest.join(' ') };
    if (instruction.keyword === 'FROM') {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)!;
      result.push({ from: match[1]!, name: match[2] ?? String(result.length), instructions: [] });
    } else if (instruction.keyword !== 'ARG' || result.length > 0) {
      result.at(-1)?.instructions.push(instruction);
    }
  }
  return result;
}

function isIgnored(path: string): boolean {
  return ignored.some((pattern) => {
    const regex = new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]]/g, '\\$&')
        .replace(/\*\*\//g, '\0')
        .replace(/\*/g, '[^/]*')
        .replace(/\0/g, '(?:.*/)?')}(?:/.*)?$`,
    );
    return regex.test(path);
  });
}

describe('Dockerfile', () => {
  const all = stages();
  const runtime = all.at(-1)!;
  const find = (keyword: string) => runtime.instructions.filter((i) => i.keyword === keyword);

  it('has build, dependency and runtime stages, and ships a non-root runtime with a health check', () => {
    expect(all.map((stage) => stage.name)).toEqual(['build', 'prod-deps', 'runtime']);
    expect(runtime.from).toMatch(/^node:\$\{NODE_VERSION\}-bookworm-slim$/);
    const user = find('USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(find('HEALTHCHECK')).toHaveLength(1);
    const entrypoint = JSON.parse(find('ENTRYPOINT')[0]!.args) as string[];
    expect(entrypoint).toEqual(['node', '/app/packages/pg-replicate/bin/pg-replicate.js', 'run']);
    expect(find('EXPOSE')[0]!.args).toBe('9898');
    expect(all.flatMap((stage) => stage.instructions).filter((i) => i.keyword === 'ADD')).toEqual([]);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    const sources = all
      .flatMap((stage) => stage.instructions)
      .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(8);
    for (const source of sources) {
      expect(existsSync(join(ROOT, source)), source).toBe(true);
      expect(isIgnored(source), `${source} is excluded by .dockerignore`).toBe(false);
    }
    for (const excluded of [
      'node_modules',
      'packages/pg-replicate/dist',
      'packages/pg-replicate/test',
      '.git',
    ]) {
      expect(isIgnored(excluded), excluded).toBe(true);
    }
  });

  it('copies from stages that exist, and builds what the runtime copies', () => {
    const names = new Set(all.map((stage) => stage.name));
    const fromCopies = runtime.instructions.filter(
      (i) => i.keyword === 'COPY' && i.args.startsWith('--from'),
    );
    for (const copy of fromCopies) expect(names).toContain(/^--from=(\S+)/.exec(copy.args)![1]);
    const compile = all[0]!.instructions.find((i) => i.keyword === 'RUN' && i.args.includes('tsc -b'))!.args;
    for (const copy of fromCopies.filter((i) => i.args.includes('/dist'))) {
      const pkg = /\/app\/(packages\/[^/]+)\/dist/.exec(copy.args)![1]!;
      expect(compile).toContain(pkg);
    }
    const workspaces = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }
    ).workspaces;
    const names_ = workspaces.map(
      (path) => (JSON.parse(readFileSync(join(ROOT, path, 'package.json'), 'utf8')) as { name: string }).name,
    );
    for (const match of dockerfile.matchAll(/--workspace (\S+)/g)) expect(names_).toContain(match[1]);
    // Every workspace's manifest is in the build stage, so npm ci sees the project the lockfile describes.
    for (const path of workspaces) expect(dockerfile).toContain(`COPY ${path}/package.json ${path}/\n`);
  });

  it('has a health check command that passes on a live /healthz and fails otherwise', async () => {
    const command = JSON.parse(find('HEALTHCHECK')[0]!.args.replace(/^.*?CMD /, '')) as string[];
    const port = await freePort();
    // Asynchronously: the server answering the check lives in this process.
    const run = () =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, command.slice(1), {
          env: { PG_REPLICATE_HTTP_PORT: String(port), PATH: process.env.PATH ?? '' },
          timeout: 10_000,
        });
        child.on('exit', (code) => resolve(code));
      });
    const server = createServer((request, response) =>
      response.writeHead(request.url === '/healthz' ? 200 : 404).end(),
    );
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      expect(command[0]).toBe('node');
      expect(await run()).toBe(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(await run()).toBe(1);
  });

  it.skipIf(!hasCommand('hadolint'))('passes hadolint', () => {
    execFileSync('hadolint', [join(ROOT, 'Dockerfile')], { stdio: 'pipe' });
  });

  it.skipIf(!dockerDaemon())(
    'builds (docker daemon available)',
    () => {
      execFileSync('docker', ['build', '--target', 'build', '-t', 'pg-replicate:test-build', ROOT], {
        stdio: 'pipe',
      });
    },
    600_000,
  );
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<
      string,
      { command?: string[]; environment?: Record<string, string>; volumes?: string[] }
    >;
    configs: Record<string, { content: string }>;
  };

  it('runs Postgres with wal_level=logical, and the replicator with its DuckDB file on a volume', () => {
    expect(compose.services['postgres']!.command).toEqual(expect.arrayContaining(['wal_level=logical']));
    expect(compose.services['replicator']!.volumes).toEqual(['replica:/data']);
    expect(compose.services['replicator']!.environment!['PG_REPLICATE_SOURCE_PASSWORD']).toMatch(/^\$\{/);
  });

  it('holds a replicator config that the schema accepts, with no secret in it', () => {
    const dir = tempDir('compose');
    const file = join(dir, 'replicator.yaml');
    writeFileSync(file, compose.configs['replicator-config']!.content);
    const loaded = loadConfig({ path: file, env: { PG_REPLICATE_SOURCE_PASSWORD: 'from-the-environment' } });
    expect(loaded.config).toMatchObject({
      name: 'demo',
      sink: { type: 'duckdb', path: '/data/replica.duckdb' },
    });
    expect(loaded.warnings).toEqual([]);
  });
});

function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

function dockerDaemon(): boolean {
  return (
    hasCommand('docker') && spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 5_000 }).status === 0
  );
}
