import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createLogger, effectiveLevel } from '../../src/log/index.js';

function sink(isTTY: boolean): Writable & { isTTY: boolean; text: string } {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      stream.text += chunk.toString();
      done();
    },
  }) as Writable & { isTTY: boolean; text: string };
  stream.isTTY = isTTY;
  stream.text = '';
  return stream;
}

describe('log level', () => {
  it('defaults to auto: info on a terminal, warn anywhere else', () => {
    const config = loadConfig({ env: {} });
    expect(config.log.level).toBe('auto');
    expect(effectiveLevel(config.log.level, { isTTY: true })).toBe('info');
    expect(effectiveLevel(config.log.level, { isTTY: false })).toBe('warn');
    expect(effectiveLevel(config.log.level, {})).toBe('warn');
  });

  it('a level set in a file, the environment or a flag is kept, terminal or not', () => {
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const) {
      expect(effectiveLevel(level, { isTTY: false })).toBe(level);
      expect(effectiveLevel(level, { isTTY: true })).toBe(level);
    }
    expect(loadConfig({ env: { UCP_LOG_LEVEL: 'info' } }).log.level).toBe('info');
    expect(loadConfig({ env: { UCP_LOG_LEVEL: 'warn' }, overrides: { 'log.level': 'debug' } }).log.level).toBe('debug');
  });

  it('a JSON logger on a pipe drops info lines at auto and keeps warnings', () => {
    const out = sink(false);
    const logger = createLogger({ level: 'auto', format: 'json', destination: out });
    logger.info({ job: 'j1' }, 'result accepted');
    logger.warn({ job: 'j2' }, 'result rejected');
    const lines = out.text.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[40, 'result rejected']]);
  });

  it('a JSON logger told info on a pipe keeps info lines', () => {
    const out = sink(false);
    const logger = createLogger({ level: 'info', format: 'json', destination: out });
    logger.info('result accepted');
    expect(out.text).toContain('"msg":"result accepted"');
  });
});
