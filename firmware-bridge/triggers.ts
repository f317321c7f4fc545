import { isFinal, type JobSpec, type JobView } from '../src/protocol/index.js';
import type { Logger } from '../src/log/index.js';
import type { DataTransfer, NodeLink } from '../src/transport/index.js';
import type { Trigger } from './bridge-config.js';
import type { Commands } from './commands.js';
import { fires, type RuleState } from './trigger-rule.js';

/** How often a running job is asked about, besides the updates its broker pushes. */
const POLL_MS = 500;
/** Rule states kept per trigger before the oldest go. */
const MAX_STATES = 100_000;

export type SparkplugCommand = (edge: { group: string; node: string; device?: string }, metric: string, value: unknown) => string;

/**
 * Trigger rules: readings matching a rule's `on` pattern that fire it start a job from the rule's
 * template, with the reading staged as the job's input (`<job>/input`). When the job succeeds its output
 * (`<job>/output`) is stored as a series record and/or sent to the device as a command.
 */
export class Triggers {
  private readonly states: Array<Map<string, RuleState>>;
  private readonly waiting = new Map<string, (job: JobView) => void>();
  private n = 0;
  private stopped = false;

  constructor(
    private readonly rules: readonly Trigger[],
    private readonly link: NodeLink,
    private readonly transfer: DataTransfer,
    private readonly broker: () => Promise<string>,
    private readonly commands: Commands,
    private readonly sparkplugCommand: SparkplugCommand,
    private readonly log: Logger,
  ) {
    this.states = rules.map(() => new Map());
    link.on('job_update', (msg) => this.waiting.get(msg.body.job.job_id)?.(msg.body.job));
  }

  /** A reading was buffered under `name`. */
  observe(name: string, vars: Readonly<Record<string, string>>, value: unknown, line: Uint8Array): void {
    if (this.stopped) return;
    for (const [i, rule] of this.rules.entries()) {
      const captures = rule.on.match(name);
      if (captures === undefined) continue;
      const states = this.states[i]!;
      let state = states.get(name);
      if (state === undefined) {
        state = { seen: 0 };
        states.set(name, state);
        if (states.size > MAX_STATES) states.delete(states.keys().next().value!);
      }
      if (!fires(rule, state, value, Date.now())) continue;
      this.link.counters.inc('triggers_fired');
      const all = { ...vars, ...captures };
      void this.run(rule, all, line).catch((err: Error) => {
        this.link.counters.inc('trigger_jobs_failed');
        this.log.warn({ trigger: rule.name, name, err: err.message }, 'trigger job failed');
      });
    }
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(rule: Trigger, vars: Record<string, string>, line: Uint8Array): Promise<void> {
    const jobId = `${rule.name}.${this.link.id}.${Date.now().toString(36)}.${(this.n++).toString(36)}`.slice(0, 128);
    const input = `${jobId}/input`;
    const output = `${jobId}/output`;
    await this.transfer.putBytes(input, line);
    const spec: JobSpec = {
      job_id: jobId,
      wasm_module: rule.job.wasmModule,
      capabilities: rule.job.tags.length > 0 ? { tags: [...rule.job.tags] } : {},
      argv: [...rule.job.argv],
      env: { ...rule.job.env },
      dirs: [],
      data: { [rule.job.input]: input },
      results: [],
      named_results: { [rule.job.output]: output },
      priority: rule.job.priority,
      timeout_s: rule.job.timeoutS,
      max_memory_mb: rule.job.maxMemoryMb,
    };
    const done = this.finished(jobId, (rule.job.timeoutS + 120) * 1_000);
    const reply = await this.link.request(await this.broker(), 'job_submit', { spec, after: [] });
    if (reply.kind !== 'job_accepted') throw new Error(`the broker answered ${reply.kind} to a submission`);
    this.link.counters.inc('trigger_jobs_submitted');
    this.log.info({ trigger: rule.name, job: jobId, device: vars['device'] }, 'trigger fired: job submitted');
    const job = await done;
    if (job.state !== 'succeeded') throw new Error(`job ${jobId} ${job.state}: ${job.reason ?? job.result?.message ?? ''}`);
    const { bytes } = await this.transfer.readAll(output);
    this.link.counters.inc('trigger_jobs_succeeded');
    this.deliver(rule, vars, jobId, bytes);
  }

  /** Resolves with the job once it has ended, from pushed updates or by asking. */
  private finished(jobId: string, timeoutMs: number): Promise<JobView> {
    return new Promise((resolve, reject) => {
      const deadline = performance.now() + timeoutMs;
      let poll: NodeJS.Timeout | undefined;
      const end = (job?: JobView, err?: Error) => {
        this.waiting.delete(jobId);
        clearTimeout(poll);
        if (job !== undefined) resolve(job);
        else reject(err!);
      };
      this.waiting.set(jobId, (job) => {
        if (isFinal(job.state)) end(job);
      });
      const ask = async () => {
        if (this.stopped) return end(undefined, new Error('the bridge is stopping'));
        if (performance.now() > deadline) return end(undefined, new Error(`job ${jobId} did not end within ${timeoutMs} ms`));
        try {
          const reply = await this.link.request(await this.broker(), 'job_query', { job_id: jobId });
          if (reply.kind === 'job_info' && isFinal(reply.body.job.state)) return end(reply.body.job);
        } catch {
          // Not submitted yet, or the broker is restarting: ask again.
        }
        if (this.waiting.has(jobId)) poll = setTimeout(() => void ask(), POLL_MS);
      };
      poll = setTimeout(() => void ask(), POLL_MS);
    });
  }

  private deliver(rule: Trigger, vars: Record<string, string>, jobId: string, bytes: Uint8Array): void {
    const text = Buffer.from(bytes).toString('utf8');
    const device = vars['device'] ?? '';
    const { result } = rule;
    const storeName = result.store?.fill(vars);
    if (storeName !== undefined) {
      let value: unknown = text;
      try {
        value = JSON.parse(text);
      } catch {
        // Not JSON: kept as text.
      }
      this.commands.recordResult(storeName, jobId, value);
    }
    const log = `bridge/${this.link.id}/commands`;
    if (result.commandTopic !== undefined) {
      const topic = result.commandTopic.fill(vars);
      if (topic === undefined) throw new Error(`command topic ${result.commandTopic.template} has no value for one of its placeholders`);
      const ackTopic = result.ackTopic?.fill(vars);
      this.commands.send({ jobId, device, topic, payload: bytes, ...(ackTopic !== undefined ? { ackTopic } : {}), timeoutMs: result.ackTimeoutMs, log });
    }
    if (result.sparkplugMetric !== undefined) {
      let value: unknown = text.trim();
      try {
        value = JSON.parse(text);
      } catch {
        // Sent as text.
      }
      const group = vars['group'];
      const node = vars['node'];
      if (group === undefined || node === undefined) throw new Error(`trigger ${rule.name} sends a Sparkplug command, but its reading came from no Sparkplug node`);
      const onDevice = vars['edge'] !== undefined && vars['edge'] !== node;
      const topic = this.sparkplugCommand({ group, node, ...(onDevice ? { device: vars['device']! } : {}) }, result.sparkplugMetric, value);
      this.commands.sent(jobId, device, topic, log);
    }
  }
}
