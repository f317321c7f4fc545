/**
 * A device topic pattern: MQTT levels where `{name}` captures one level under that name, `+` matches one
 * level without capturing it, and a final `#` matches the rest. `sensors/{device}/{metric}` subscribes
 * to `sensors/+/+` and turns `sensors/pump-1/level` into { device: "pump-1", metric: "level" }.
 */
export class TopicPattern {
  /** The MQTT subscription filter. */
  readonly filter: string;
  readonly names: readonly string[];
  private readonly levels: ReadonlyArray<{ kind: 'literal'; text: string } | { kind: 'capture'; name: string } | { kind: 'one' } | { kind: 'rest' }>;

  constructor(readonly pattern: string) {
    const problem = TopicPattern.problem(pattern);
    if (problem !== undefined) throw new Error(problem);
    this.levels = pattern.split('/').map((level) => {
      if (level === '#') return { kind: 'rest' as const };
      if (level === '+') return { kind: 'one' as const };
      const capture = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(level);
      if (capture !== null) return { kind: 'capture' as const, name: capture[1]! };
      return { kind: 'literal' as const, text: level };
    });
    this.names = this.levels.flatMap((l) => (l.kind === 'capture' ? [l.name] : []));
    this.filter = this.levels.map((l) => (l.kind === 'literal' ? l.text : l.kind === 'rest' ? '#' : '+')).join('/');
  }

  /** Why a pattern cannot be used, or undefined. */
  static problem(pattern: string): string | undefined {
    if (pattern === '' || pattern.length > 1_024) return `topic pattern "${pattern.slice(0, 64)}" must be 1-1024 characters`;
    const levels = pattern.split('/');
    const seen = new Set<string>();
    for (const [i, level] of levels.entries()) {
      if (level === '#') {
        if (i !== levels.length - 1) return `topic pattern "${pattern}": # may only be the last level`;
        continue;
      }
      if (level === '+') continue;
      const capture = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(level);
      if (capture !== null) {
        if (seen.has(capture[1]!)) return `topic pattern "${pattern}" names {${capture[1]}} twice`;
        seen.add(capture[1]!);
        continue;
      }
      if (/[{}+#\0]/.test(level)) return `topic pattern "${pattern}": level "${level}" must be plain text, {name}, + or #`;
    }
    return undefined;
  }

  /** The captured levels, or undefined when the topic does not match. */
  match(topic: string): Record<string, string> | undefined {
    const parts = topic.split('/');
    const out: Record<string, string> = {};
    for (let i = 0; i < this.levels.length; i++) {
      const level = this.levels[i]!;
      if (level.kind === 'rest') return out;
      const part = parts[i];
      if (part === undefined) return undefined;
      if (level.kind === 'literal') {
        if (part !== level.text) return undefined;
      } else if (level.kind === 'capture') {
        out[level.name] = part;
      }
    }
    return parts.length === this.levels.length ? out : undefined;
  }
}
