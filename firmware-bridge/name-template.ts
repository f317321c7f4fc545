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
  }

  /** Fills the template; undefined when a placeholder has no value or the result is too long. */
  fill(values: Readonly<Record<string, string>>): string | undefined {
    let missing = false;
    const name = this.template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, key: string) => {
      const value = values[key];
      if (value === undefined || value === '') {
        missing = true;
        return '';
      }
      return segments(value);
    });
    return missing || name.length > 512 ? undefined : name;
  }
}

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
