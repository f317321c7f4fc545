import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig } from '../../src/config/index.js';
import { KINDS } from '../../src/protocol/index.js';
import { VERSION } from '../../src/version.js';
import { ROOT } from '../helpers/processes.js';

/** The README and the protocol reference are part of the product: they must not drift from the code. */
describe('documentation stays true', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const protocol = readFileSync(join(ROOT, 'src', 'protocol', 'PROTOCOL.md'), 'utf8');

  it('the README configuration reference lists every key', () => {
    const missing = describeConfig()
      .map((k) => k.key)
      .filter((key) => !readme.includes(`| \`${key}\` |`));
    expect(missing).toEqual([]);
  });

  it('the protocol reference defines every message kind', () => {
    const missing = KINDS.filter((kind) => !new RegExp(`^${kind} = \\{`, 'm').test(protocol));
    expect(missing).toEqual([]);
  });

  it('the version reported on the wire is the package version', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
  });
});
