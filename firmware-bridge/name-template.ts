import { JOB_PATH_PATTERN } from '../src/protocol/index.js';

/**
 * Templates make path-shaped names (segments of A-Z a-z 0-9 . _ -, no "." or ".."): the safe subset of
 * data names (which may be any text) that every tool and file system handles alike.
 */
const PATH_SHAPED = JOB_PATH_PATTERN;

/**
 * A data-name template such as `field/{device}/{metric}`: each `{name}` is filled from what the topic
 * pattern captured or the codec found (a Sparkplug metric name). Device-chosen text becomes name
 * segments: a `/` in a value keeps its hierarchy, and any character a data name cannot hold becomes `_`.
 */
export class NameTemplate {
  readonly names: readonly string[];
  /** The template split once: literal text, and the placeholders between. */
  private readonly parts: ReadonlyArray<string | { readonly key: string }>;

  /** `topic`: an MQTT topic for commands rather than a data name: any text but wildcards. */
  constructor(
    readonly template: string,
    kind: 'name' | 'topic' = 'name',
  ) {
    const names: string[] = [];
    const skeleton = template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      names.push(name);
      return 'x';
    });
    if (kind === 'topic') {
      if (template === '' || template.length > 400 || /[+#\0]/.test(skeleton)) throw new Error(`topic "${template.slice(0, 64)}" must be a plain MQTT topic with {name} placeholders (no + or #)`);
    } else if (template.length > 400 || !PATH_SHAPED.test(skeleton)) {
      throw new Error(`name template "${template.slice(0, 64)}" must be a data name (segments of A-Z a-z 0-9 . _ - separated by /) with {name} placeholders`);
    }
    this.names = names;
    this.parts = template.split(/\{([A-Za-z_][A-Za-z0-9_]*)\}/).map((text, i) => (i % 2 === 1 ? { key: text } : text)).filter((p) => p !== '');
  }

  /** Fills the template; undefined when a placeholder has no value or the result is too long. */
  fill(values: Readonly<Record<string, string>>): string | undefined {
    // Called for every reading and target: no regular expression, and each value cleaned once.
    let name = '';
    for (const part of this.parts) {
      if (typeof part === 'string') {
        name += part;
        continue;
      }
      const value = values[part.key];
      if (value === undefined || value === '') return undefined;
      let clean = CLEANED.get(value);
      if (clean === undefined) {
        if (CLEANED.size >= CLEANED_MAX) CLEANED.clear();
        CLEANED.set(value, (clean = segments(value)));
      }
      name += clean;
    }
    return name.length > 512 ? undefined : name;
  }
}

/** Device ids and metric names repeat reading after reading: their cleaned form is kept. */
const CLEANED = new Map<string, string>();
const CLEANED_MAX = 10_000;

/** Device text as one or more name segments. */
export function segments(value: string): string {
  return value
    .split('/')
    .filter((s) => s !== '')
    .map((s) => {
      const clean = s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 128);
      return clean === '.' || clean === '..' ? clean.replace(/\./g, '_') : clean;
    })
    .join('/') || '_';
}
