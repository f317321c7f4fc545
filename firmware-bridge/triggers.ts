import { isFinal, type JobSpec, type JobView } from '../src/protocol/index.js';
import type { Logger } from '../src/log/index.js';
import type { NodeStore, Table } from '../src/store/index.js';
import { RemoteError, type DataTransfer, type NodeLink } from '../src/transport/index.js';
import type { Trigger } from './bridge-config.js';
import type { Commands } from './commands.js';
import { fires, type RuleState } from './trigger-rule.js';

/** How often a running job is asked about, besides the updates its broker pushes. */
const POLL_MS = 500;
/** Rule states kept per trigger before the oldest go. */
const MAX_STATES = 100_000;
/** A submission the platform could not take is tried again after this long, doubling up to the maximum. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 10_000;
/** Refusals that may pass: the platform is short of something now, not refusing the job. */
const PASSING_REFUSALS = new Set(['over_budget', 'store_unavailable', 'no_broker', 'unavailable']);

/** A fired trigger's job, kept in LMDB from the moment it fires until its result was delivered. */
interface FiredJob {
  readonly rule: string;
  readonly vars: Record<string, string>;
  readonly spec: JobSpec;
  readonly line: Uint8Array;
}

/**
 * What a rule must remember across a restart to fire no job twice: when it last fired (spacing) and, for
 * a threshold, a value on the side the readings are now on. Written only when one of them changes.
 */
interface SavedRuleState {
  readonly lastFiredAt?: number;
  readonly lastValue?: number;
}

/** The job ended, or the platform refused it: trying again would not change that. */
class Settled extends Error {}

export type SparkplugCommand = (edge: { group: string; node: string; device?: string }, metric: string, value: unknown) => string;

/**
 * Trigger rules: readings matching a rule's `on` pattern that fire it start a job from the rule's
 * template, with the reading staged as the job's input (`<job>/input`). When the job succeeds its output
 * (`<job>/output`) is stored as a series record and/or sent to the device as a command.
 */
/** Which side of a threshold rule's bounds a value is on; every value is on the same side for other rules. */
function sideOf(rule: Trigger, value: number | undefined): string {
  if (rule.when !== 'threshold' || value === undefined) return value === undefined ? 'none' : 'any';
  if (rule.above !== undefined && value > rule.above) return 'above';
  if (rule.below !== undefined && value < rule.below) return 'below';
  return 'between';
}

export class Triggers {
  private readonly states: Array<Map<string, RuleState>>;
  private readonly waiting = new Map<string, (job: JobView) => void>();
  private readonly fired: Table<FiredJob>;
  private readonly saved: Table<SavedRuleState>;
  private n = 0;
  private stopped = false;
  /** Submissions waiting to be tried again: a broker coming up tries them at once. */
  private readonly retries = new Set<() => void>();

  constructor(
    private readonly rules: readonly Trigger[],
    private readonly link: NodeLink,
    private readonly transfer: DataTransfer,
    private readonly broker: () => Promise<string>,
    private readonly commands: Commands,
    private readonly sparkplugCommand: SparkplugCommand,
    private readonly log: Logger,
    store: NodeStore,
  ) {
    this.fired = store.table<FiredJob>('bridge_trigger_jobs');
    this.saved = store.table<SavedRuleState>('bridge_trigger_states');
    this.states = rules.map(() => new Map());
    link.on('job_update', (msg) => this.waiting.get(msg.body.job.job_id)?.(msg.body.job));
    link.onPresence((event) => {
      if (event.type !== 'up' || event.peer.role !== 'broker') return;
      for (const retry of [...this.retries]) retry();
    });
  }

  /** A reading is being buffered under `name` (it is written right after this returns). */
  observe(name: string, vars: Readonly<Record<string, string>>, value: unknown, line: Uint8Array): void {
    if (this.stopped) return;
    for (const [i, rule] of this.rules.entries()) {
      const captures = rule.on.match(name);
      if (captures === undefined) continue;
      const states = this.states[i]!;
      const key = `${rule.name}\u0000${name}`;
      let state = states.get(name);
      if (state === undefined) {
        // A name not seen since the start: where it stood before (a restart must not make a crossing).
        state = { seen: 0, ...this.saved.get(key) };
        states.set(name, state);
        if (states.size > MAX_STATES) {
          const oldest = states.keys().next().value!;
          states.delete(oldest);
          void this.saved.remove(`${rule.name}\u0000${oldest}`);
        }
      }
      const side = sideOf(rule, state.lastValue);
      const didFire = fires(rule, state, value, Date.now());
      // In the same LMDB batch as the reading (the caller writes it next): after a crash both or neither.
      if (didFire || sideOf(rule, state.lastValue) !== side) {
        void this.saved.put(key, { ...(state.lastFiredAt !== undefined ? { lastFiredAt: state.lastFiredAt } : {}), ...(state.lastValue !== undefined ? { lastValue: state.lastValue } : {}) });
      }
      if (!didFire) continue;
      this.link.counters.inc('triggers_fired');
      const fired: FiredJob = { rule: rule.name, vars: { ...vars, ...captures }, spec: this.specFor(rule), line };
      // Written before the reading that fired it (the caller writes that next): a bridge killed once the
      // reading is in its buffer has the job too, and submits it on restart under the same id.
      void this.fired.put(fired.spec.job_id, fired).then(() => this.log.info({ trigger: rule.name, job: fired.spec.job_id, name }, 'trigger fired: job recorded'));
      this.follow(rule, fired);
    }
  }

  /** Jobs that fired before a restart and had not delivered their result: followed again, same ids. */
  resume(): number {
    let n = 0;
    for (const { key, value } of this.fired.getRange()) {
      const rule = this.rules.find((r) => r.name === value.rule);
      if (rule === undefined) {
        this.log.warn({ trigger: value.rule, job: key }, 'a trigger job from before the restart names a rule that is gone: dropped');
        void this.fired.remove(key);
        continue;
      }
      this.link.counters.inc('trigger_jobs_resumed');
      this.follow(rule, value);
      n++;
    }
    if (n > 0) this.log.info({ jobs: n }, 'following trigger jobs fired before the restart');
    return n;
  }

  stop(): void {
    this.stopped = true;
    for (const retry of [...this.retries]) retry();
  }

  /** Submits a fired job until the platform takes it, follows it to its end and delivers its result. */
  private follow(rule: Trigger, fired: FiredJob): void {
    const jobId = fired.spec.job_id;
    void (async () => {
      for (let retryMs = RETRY_MIN_MS; !this.stopped; retryMs = Math.min(RETRY_MAX_MS, retryMs * 2)) {
        try {
          await this.run(rule, fired);
          break;
        } catch (err) {
          const settled = err instanceof Settled || (err instanceof RemoteError && !PASSING_REFUSALS.has(err.code));
          if (settled) {
            this.link.counters.inc('trigger_jobs_failed');
            this.log.warn({ trigger: rule.name, job: jobId, err: (err as Error).message }, 'trigger job failed');
            break;
          }
          if (this.stopped) return;
          this.log.info({ trigger: rule.name, job: jobId, err: (err as Error).message, retryMs }, 'trigger job not submitted yet; trying again');
          await new Promise<void>((resolve) => {
            const retry = () => {
              clearTimeout(timer);
              this.retries.delete(retry);
              resolve();
            };
            const timer = setTimeout(retry, retryMs);
            this.retries.add(retry);
          });
        }
      }
      if (!this.stopped) await this.fired.remove(jobId);
    })().catch((err: Error) => this.log.error({ trigger: rule.name, job: jobId, err: err.message }, 'following a trigger job failed'));
  }

  private specFor(rule: Trigger): JobSpec {
    const jobId = `${rule.name}.${this.link.id}.${Date.now().toString(36)}.${(this.n++).toString(36)}`.slice(0, 128);
    const input = `${jobId}/input`;
    const output = `${jobId}/output`;
    return {
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
  }

  private async run(rule: Trigger, fired: FiredJob): Promise<void> {
    const { spec, vars } = fired;
    const jobId = spec.job_id;
    // Staged again on a resubmission: the same bytes, whichever attempt stored them first.
    await this.transfer.putBytes(`${jobId}/input`, fired.line);
    const done = this.finished(jobId, (rule.job.timeoutS + 120) * 1_000);
    let reply;
    try {
      reply = await this.link.request(await this.broker(), 'job_submit', { spec, after: [] });
    } catch (err) {
      this.waiting.delete(jobId);
      done.catch(() => undefined);
      throw err;
    }
    if (reply.kind !== 'job_accepted') throw new Error(`the broker answered ${reply.kind} to a submission`);
    if (reply.body.created) this.link.counters.inc('trigger_jobs_submitted');
    this.log.info({ trigger: rule.name, job: jobId, device: vars['device'], created: reply.body.created }, 'trigger job submitted');
    const job = await done;
    if (job.state !== 'succeeded') throw new Settled(`job ${jobId} ${job.state}: ${job.reason ?? job.result?.message ?? ''}`);
    const { bytes } = await this.transfer.readAll(Object.values(spec.named_results)[0]!);
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
        if (performance.now() > deadline) return end(undefined, new Settled(`job ${jobId} did not end within ${timeoutMs} ms`));
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
