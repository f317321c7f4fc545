// npm's `prepare` step, run after `npm install` / `npm ci` in a source checkout. With the dev dependencies
// it builds dist/, so `npx ucp` works at once. A production install (`npm ci --omit=dev`) has no TypeScript
// and must still succeed: it says so instead of failing with `tsc: not found`. Packing builds in `prepack`,
// which fails loudly without TypeScript, so a tarball never ships without dist/.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

if (process.env.npm_command === 'pack' || process.env.npm_command === 'publish') process.exit(0);

try {
  createRequire(import.meta.url).resolve('typescript');
} catch {
  process.stdout.write(
    'ucp-edge: TypeScript is not installed (dev dependencies omitted), so dist/ was not built. ' +
      'Run `npm ci && npm run build` for a build, or install a packed release (`npm install -g ucp-edge-<version>.tgz`).\n',
  );
  process.exit(0);
}

const npm = process.env.npm_execpath;
const run = npm !== undefined && npm !== '' ? spawnSync(process.execPath, [npm, 'run', 'build'], { stdio: 'inherit' }) : spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
process.exit(run.status ?? 1);
