#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { UcpConfig } from '../config/index.js';
import type { JobState, Role } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';
import { VERSION } from '../version.js';
import { EXIT_FAILED, EXIT_NOT_DONE, EXIT_OK, EXIT_USAGE } from './exit-codes.js';
import { parseSince, parseStates } from './job-filters.js';
import type { Output } from './inspect.js';
import type { GlobalFlags } from './settings.js';
import { UsageError } from './usage-error.js';

/*
 * Each command loads its own code when it runs (dynamic imports below), so `ucp --version` loads almost
 * nothing and a broker process never loads the executor, the datastore or the bridge: on a field unit
 * every module costs start-up time and resident memory for as long as the node runs.
 */

function integer(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}`);
    return n;
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * The global options each command uses, so its --help shows those and no others. Nodes and client
 * commands have an identity (--node-id, --data-dir); one-off queries do not; the hub has no cluster.
 */
const CONFIG_FLAGS = ['config', 'logLevel', 'set'];
const QUERY_FLAGS = ['hub', 'cluster', 'json', ...CONFIG_FLAGS];
const CLIENT_FLAGS = ['nodeId', 'dataDir', ...QUERY_FLAGS];
const APPLICABLE_GLOBALS: Record<string, readonly string[]> = {
  hub: CONFIG_FLAGS,
  up: ['cluster', 'dataDir', 'nodeId', ...CONFIG_FLAGS],
  broker: ['hub', 'cluster', 'dataDir', 'nodeId', ...CONFIG_FLAGS],
  executor: ['hub', 'cluster', 'dataDir', 'nodeId', ...CONFIG_FLAGS],
  datastore: ['hub', 'cluster', 'dataDir', 'nodeId', ...CONFIG_FLAGS],
  bridge: ['hub', 'cluster', 'dataDir', 'nodeId', 'json', ...CONFIG_FLAGS],
  nodes: QUERY_FLAGS,
  ping: QUERY_FLAGS,
  status: QUERY_FLAGS,
  data: QUERY_FLAGS,
  jobs: QUERY_FLAGS,
  job: QUERY_FLAGS,
  notice: CLIENT_FLAGS,
  outbox: CLIENT_FLAGS,
  run: CLIENT_FLAGS,
  results: CLIENT_FLAGS,
  cancel: CLIENT_FLAGS,
  demo: CONFIG_FLAGS,
};

const program = new Command('ucp');
// Before any subcommand exists: each copies these settings when it is created.
program
  .exitOverride()
  // Usage errors are one line like every other error: what is wrong, and where help is.
  .configureOutput({ outputError: (text, write) => write(`ucp: ${text.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (add --help for usage)\n`) })
  .configureHelp({
    showGlobalOptions: true,
    visibleGlobalOptions(cmd: Command) {
      const top = cmd.parent?.parent === null ? cmd : cmd.parent ?? cmd;
      const allowed = APPLICABLE_GLOBALS[top.name()];
      if (cmd.parent === null) return [];
      // A command not in the table yet shows them all rather than none.
      return program.options.filter((o) => !o.hidden && o.long !== '--version' && (allowed === undefined || allowed.includes(o.attributeName())));
    },
  });
program
  .description('ucp-edge: the Urban Compute Platform runtime (brokers, executors, datastores and clients over MQTT)')
  .version(VERSION, '-V, --version')
  .option('--hub <url>', 'hub to connect to (env UCP_HUB; default mqtt://127.0.0.1:1883)')
  .option('--cluster <name>', 'cluster name, the topic prefix ucp/<cluster>/ (env UCP_CLUSTER)')
  .option('--data-dir <dir>', 'data directory (env UCP_DATA_DIR; default <state dir>/<node id>, see the README); for `ucp up`, the parent of one directory per node')
  .option('--node-id <id>', 'node id and MQTT client id (env UCP_NODE_ID; default <role>-<hostname>; for clients, one made once and kept in the state directory)')
  .option('--config <file>', 'TOML configuration file (env UCP_CONFIG)')
  .option('--log-level <level>', 'trace, debug, info, warn, error, fatal or silent (env UCP_LOG_LEVEL; query commands log only when this is given)')
  .option('--set <key=value>', 'override any configuration key, e.g. --set liveness.dead_after_ms=3000 (repeatable)', collect)
  .option('--json', 'print machine-readable JSON instead of tables');

function globals(cmd: Command): GlobalFlags {
  return cmd.optsWithGlobals<GlobalFlags>();
}

/**
 * What a query command needs: its configuration, a logger on stderr, and where its answer goes. A `quiet`
 * command's own output is the story: node logs appear only when asked for with --log-level.
 */
async function tool(cmd: Command, quiet = false) {
  const [{ makeLogger, resolveConfig }, { stdout }] = await Promise.all([import('./settings.js'), import('./inspect.js')]);
  const flags = globals(cmd);
  const config = resolveConfig(flags, quiet && flags.logLevel === undefined ? { 'log.level': 'warn' } : {});
  const out: Output = { ...stdout, json: flags.json === true };
  return { config, logger: makeLogger(config, true), out };
}

async function runRole(cmd: Command, role: Role): Promise<void> {
  const [{ defaultNodeId, makeLogger, resolveConfig }, { NodeRuntime, TransportError }, { runUntilSignal }, { attachRole }, { defaultDataDir }] = await Promise.all([
    import('./settings.js'),
    import('../transport/index.js'),
    import('./lifecycle.js'),
    import('./roles.js'),
    import('./state-dir.js'),
  ]);
  const flags = globals(cmd);
  const config = resolveConfig(flags);
  const logger = makeLogger(config, false);
  const nodeId = defaultNodeId(config, role);
  // Handle signals before the store is opened, so that a stop during start-up still releases it cleanly.
  let node: NodeRuntime | undefined;
  const stopping = runUntilSignal(logger, async () => node?.stop());
  node = NodeRuntime.create({ config, nodeId, role, dataDir: defaultDataDir(config, nodeId), logger });
  await attachRole(node, role, config);
  if (config.node.broker_eligible && role !== 'broker') {
    const { promoteWhenBrokerless } = await import('./promotion.js');
    const promotion = promoteWhenBrokerless(node, config, logger);
    node.beforeStop(() => promotion.stop());
  }
  node.log.info({ hub: config.hub.url, cluster: config.node.cluster, dataDir: node.store.dir }, `starting ${role}`);
  try {
    await node.connect();
  } catch (err) {
    // Stopped by a signal before the hub was ever reached: the clean stop is already under way.
    if (!(err instanceof TransportError && err.code === 'link_closed')) throw err;
  }
  await stopping;
}

program
  .command('hub')
  .description('run the embedded MQTT hub (aedes) on its own')
  .option('--port <port>', 'TCP port (default hub.port, 1883; 0 picks a free one)', integer('port', 0, 65535))
  .option('--host <host>', 'interface to listen on (default hub.listen_host)')
  .option('--insecure', 'allow a hub without credentials on an address other hosts can reach')
  .action(async (opts: { port?: number; host?: string; insecure?: boolean }, cmd: Command) => {
    const [{ makeLogger, resolveConfig }, { startHub }, { runUntilSignal }] = await Promise.all([import('./settings.js'), import('./local-cluster.js'), import('./lifecycle.js')]);
    const config = resolveConfig(globals(cmd));
    const logger = makeLogger(config, false);
    const running = await startHub(config, logger, opts.host ?? config.hub.listen_host, opts.port ?? config.hub.port, opts.insecure === true);
    process.stdout.write(`hub listening on ${running.hub.url}\n`);
    await runUntilSignal(logger, () => running.stop());
  });

program
  .command('up')
  .description('start a hub, a broker, a datastore and N executors in one process')
  .option('--port <port>', 'hub TCP port (default hub.port, 1883; 0 picks a free one)', integer('port', 0, 65535))
  .option('--host <host>', 'interface the hub listens on (default hub.listen_host)')
  .option('--executors <n>', 'number of executors', integer('executors', 0, 64), 1)
  .option('--insecure', 'allow a hub without credentials on an address other hosts can reach')
  .action(async (opts: { port?: number; host?: string; executors: number; insecure?: boolean }, cmd: Command) => {
    const [{ hostLabel, makeLogger, resolveConfig }, { startLocalCluster }, { runUntilSignal }, { stateRoot }, { resolve }] = await Promise.all([
      import('./settings.js'),
      import('./local-cluster.js'),
      import('./lifecycle.js'),
      import('./state-dir.js'),
      import('node:path'),
    ]);
    const flags = globals(cmd);
    const config: UcpConfig = resolveConfig(flags);
    const logger = makeLogger(config, false);
    const cluster = await startLocalCluster({
      config,
      logger,
      dataRoot: config.node.data_dir !== '' ? resolve(config.node.data_dir) : stateRoot(),
      executors: opts.executors,
      base: config.node.id !== '' ? config.node.id : hostLabel(),
      port: opts.port ?? config.hub.port,
      host: opts.host ?? config.hub.listen_host,
      insecure: opts.insecure === true,
    });
    process.stdout.write(`hub listening on ${cluster.hub.url}; nodes: ${cluster.nodes.map((n) => n.link.id).join(', ')}\n`);
    await runUntilSignal(logger, () => cluster.stop());
  });

for (const role of ['broker', 'executor', 'datastore'] as const) {
  program
    .command(role)
    .description(`run ${role === 'executor' ? 'an' : 'a'} ${role} node against --hub`)
    .action(async (_opts: unknown, cmd: Command) => runRole(cmd, role));
}

const bridge = program
  .command('bridge')
  .description('run a firmware bridge: device topics on a field broker in, named data and jobs on the platform, commands back out (--config FILE holds its [[mapping]] and [[trigger]] tables)')
  .action(async (_opts: unknown, cmd: Command) => {
    const flags = globals(cmd);
    if (flags.config === undefined && process.env['UCP_CONFIG'] === undefined) throw new UsageError('ucp bridge needs --config FILE with its [[mapping]] tables (see config/bridge-*.toml)');
    const { runBridge } = await import('./bridge.js');
    await runBridge(flags);
  });
bridge
  .command('simulate')
  .description('simulated field devices of one firmware family on the field broker: realistic readings, and answers to commands')
  .addOption(new Option('--profile <name>', 'firmware family').choices(['esphome', 'tasmota', 'chirpstack', 'sparkplug']).makeOptionMandatory())
  .option('--devices <n>', 'number of devices', integer('devices', 1, 100_000), 10)
  .option('--rate <r>', 'readings per second per device', (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > 100_000) throw new InvalidArgumentError('rate must be a number above 0 and at most 100000');
    return n;
  }, 1)
  .option('--count <n>', 'readings per device, then exit (default: until stopped)', integer('count', 0, 1_000_000_000), 0)
  .option('--duration <s>', 'seconds to run, then exit (default: until stopped)', integer('duration', 0, 31_536_000), 0)
  .addOption(new Option('--qos <q>', 'MQTT QoS of readings').choices(['0', '1']).default('1'))
  .option('--field <url>', 'the field broker (default bridge.field_url)')
  .action(async (opts: { profile: 'esphome' | 'tasmota' | 'chirpstack' | 'sparkplug'; devices: number; rate: number; count: number; duration: number; qos: '0' | '1'; field?: string }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd);
    const { simulate } = await import('../../firmware-bridge/simulator/simulator.js');
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const report = await simulate({ fieldUrl: opts.field ?? config.bridge.field_url, profile: opts.profile, devices: opts.devices, rate: opts.rate, count: opts.count, durationS: opts.duration, qos: opts.qos === '0' ? 0 : 1, log: logger }, stopped);
    if (out.json) out.print(JSON.stringify(report));
    else out.print(`published ${report.published} readings in ${report.seconds.toFixed(1)} s (${Math.round(report.published / Math.max(report.seconds, 0.001))}/s), answered ${report.commandsAnswered} commands`);
  });

program
  .command('nodes')
  .description("list the cluster's nodes from their retained presence and heartbeats")
  .option('--wait <ms>', 'how long to listen for presence and heartbeats', integer('wait', 0, 600_000), 1_200)
  .option('--all', 'also list clients that have left (they are hidden by default)')
  .action(async (opts: { wait: number; all?: boolean }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { listNodes } = await import('./inspect.js');
    await listNodes(config, logger, out, opts.wait, opts.all === true);
  });

program
  .command('ping')
  .description('measure request/reply round trips to a node through the hub')
  .argument('<node>', 'node id')
  .option('-c, --count <n>', 'number of pings', integer('count', 1, 1_000_000), 5)
  .action(async (node: string, opts: { count: number }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { ping } = await import('./inspect.js');
    await ping(config, logger, out, node, opts.count);
  });

program
  .command('status')
  .description("show a node's uptime, outbox, peers and counters")
  .argument('<node>', 'node id')
  .action(async (node: string, _opts: unknown, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { status } = await import('./inspect.js');
    await status(config, logger, out, node);
  });

program
  .command('notice')
  .description("send an operator notice durably; it waits in this client's outbox until the node acknowledges it")
  .argument('<node>', 'node id')
  .argument('<text>', 'the notice')
  .addOption(new Option('--severity <level>', 'severity').choices(['info', 'warning', 'critical']).default('info'))
  .option('--timeout <s>', 'seconds to wait for delivery (0: queue and return)', integer('timeout', 0, 86_400), 30)
  .action(async (node: string, text: string, opts: { severity: 'info' | 'warning' | 'critical'; timeout: number }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { sendNotice } = await import('./notice.js');
    process.exitCode = await sendNotice(config, logger, out, node, text, { severity: opts.severity, timeoutS: opts.timeout });
  });

program
  .command('outbox')
  .description("deliver what this client's durable outbox still holds")
  .option('--wait <s>', 'seconds to wait for delivery', integer('wait', 0, 86_400), 10)
  .action(async (opts: { wait: number }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { flushOutbox } = await import('./notice.js');
    process.exitCode = await flushOutbox(config, logger, out, opts.wait);
  });

const data = program.command('data').description('named data: put, get, list and delete through a broker');
data
  .command('put')
  .description('store a file under a data name (e.g. fire/district-3/temps)')
  .argument('<name>', 'data name')
  .argument('<file>', 'file to store')
  .action(async (name: string, file: string, _opts: unknown, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { dataPut } = await import('./data.js');
    await dataPut(config, logger, out, name, file);
  });
data
  .command('get')
  .description('fetch a data name to stdout or a file; with --prefix, the name and everything below it')
  .argument('<name>', 'data name')
  .option('--out <file>', 'write to this file instead of stdout')
  .option('--prefix', 'fetch the name and all names below it')
  .option('--out-dir <dir>', 'with --prefix: where to write the files (default .)')
  .action(async (name: string, opts: { out?: string; prefix?: boolean; outDir?: string }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { dataGet } = await import('./data.js');
    process.exitCode = await dataGet(config, logger, out, name, opts);
  });
data
  .command('ls')
  .description('list data names at or below a prefix, with their size and datastore')
  .argument('[prefix]', 'data name prefix')
  .action(async (prefix: string | undefined, _opts: unknown, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { dataLs } = await import('./data.js');
    await dataLs(config, logger, out, prefix);
  });
data
  .command('rm')
  .description("delete a data name, or with --job a job's data (its result archive is kept)")
  .argument('[name]', 'data name')
  .option('--job <id>', 'delete the data of this job')
  .action(async (name: string | undefined, opts: { job?: string }, cmd: Command) => {
    if ((name === undefined) === (opts.job === undefined)) throw new UsageError('give either a data name or --job ID');
    const { config, logger, out } = await tool(cmd, true);
    const { dataRm } = await import('./data.js');
    await dataRm(config, logger, out, name !== undefined ? { name } : { jobId: opts.job! });
  });

program
  .command('run')
  .description('run an execution plan (REC TOML format): publish its data, submit its jobs, wait and collect the results')
  .argument('<plan>', 'plan file, e.g. examples/fire-watch/plan.toml')
  .option('--results <dir>', 'where <jobId>_result.zip files are written', 'results')
  .option('--detach', 'submit, print the job ids and exit (exit code 0 once submitted); collect later with `ucp results`')
  .option('--timeout <s>', 'seconds to wait for the jobs before giving up (exit code 3; the jobs keep running)', integer('timeout', 1, 604_800))
  .action(async (plan: string, opts: { results: string; detach?: boolean; timeout?: number }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { runPlan } = await import('./jobs.js');
    process.exitCode = await runPlan(config, logger, out, plan, { results: opts.results, detach: opts.detach === true, ...(opts.timeout !== undefined ? { timeoutS: opts.timeout } : {}) });
  });

program
  .command('results')
  .description("write out finished jobs' result archives (by default every job this client submitted and has not collected)")
  .argument('[jobs...]', 'job ids')
  .option('--results <dir>', 'where <jobId>_result.zip files are written', 'results')
  .option('--wait', 'wait for unfinished jobs to end')
  .option('--timeout <s>', 'with --wait: seconds to wait before giving up', integer('timeout', 1, 604_800))
  .action(async (ids: string[], opts: { results: string; wait?: boolean; timeout?: number }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { collectResults } = await import('./jobs.js');
    process.exitCode = await collectResults(config, logger, out, ids, { results: opts.results, wait: opts.wait === true, ...(opts.timeout !== undefined ? { timeoutS: opts.timeout } : {}) });
  });

program
  .command('cancel')
  .description('cancel jobs this client submitted, queued or running; jobs that read their results fail too')
  .argument('<jobs...>', 'job ids')
  .action(async (ids: string[], _opts: unknown, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { cancelJobs } = await import('./jobs.js');
    process.exitCode = await cancelJobs(config, logger, out, ids);
  });

program
  .command('jobs')
  .description('list jobs, newest first: unfinished ones (latest submitted first), then the latest finished')
  .option('--owner <client>', "only this client's jobs")
  .option('--limit <n>', 'at most this many jobs', integer('limit', 1, 1_000_000), 100)
  .option('--since <when>', 'only jobs not yet finished at that time: a duration back from now (10m, 2h, 1d) or a time (2025-06-01T14:30)', (v: string) => parseSince(v))
  .option('--state <states>', 'only jobs in these states: queued, assigned, running, succeeded, failed, or active / finished (comma-separated, repeatable)', parseStates)
  .action(async (opts: { owner?: string; limit: number; since?: number; state?: JobState[] }, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { listJobs } = await import('./jobs.js');
    await listJobs(config, logger, out, { limit: opts.limit, ...(opts.owner !== undefined ? { owner: opts.owner } : {}), ...(opts.since !== undefined ? { since: opts.since } : {}), ...(opts.state !== undefined ? { states: opts.state } : {}) });
  });

program
  .command('remove')
  .description("remove jobs from the cluster, stopping unfinished ones: your own, or (as an operator) anyone's")
  .argument('[jobs...]', 'job ids')
  .option('--owner <client>', 'every job of this client')
  .action(async (ids: string[], opts: { owner?: string }, cmd: Command) => {
    if (ids.length === 0 && opts.owner === undefined) throw new UsageError('give job ids or --owner CLIENT');
    const { config, logger, out } = await tool(cmd, true);
    const { removeJobs } = await import('./jobs.js');
    await removeJobs(config, logger, out, ids, opts.owner);
  });

program
  .command('job')
  .description("show one job: state, attempts (with each one's outcome) and result")
  .argument('<id>', 'job id')
  .action(async (id: string, _opts: unknown, cmd: Command) => {
    const { config, logger, out } = await tool(cmd, true);
    const { showJob } = await import('./jobs.js');
    await showJob(config, logger, out, id);
  });

const auth = program.command('auth').description('per-node credentials the hub checks: add, remove, list, export for Mosquitto');
auth
  .command('add')
  .description('give a node a credential with a role; prints a generated password once')
  .argument('<node>', 'node id (also its MQTT client id and user name)')
  .addOption(new Option('--role <role>', "the node's role").choices(['broker', 'executor', 'datastore', 'client', 'operator', 'bridge']).makeOptionMandatory())
  .option('--password-stdin', 'read the password from stdin instead of generating one')
  .option('--certificate', 'may log in with a client certificate whose common name is the node id')
  .option('--force', 'replace an existing credential')
  .option('--file <file>', 'credentials file (default hub.credentials_file, else ./credentials.toml)')
  .action(async (node: string, opts: { role: string; passwordStdin?: boolean; certificate?: boolean; force?: boolean; file?: string }, cmd: Command) => {
    const { config, out } = await tool(cmd);
    const { authAdd, credentialsPath, readPasswordFromStdin } = await import('./auth.js');
    const password = opts.passwordStdin === true ? await readPasswordFromStdin() : undefined;
    await authAdd(credentialsPath(config, opts.file), out, node, { role: opts.role, certificate: opts.certificate === true, force: opts.force === true, ...(password !== undefined ? { password } : {}) });
  });
auth
  .command('rm')
  .description('remove a node\'s credential; a running hub disconnects it')
  .argument('<node>', 'node id')
  .option('--file <file>', 'credentials file (default hub.credentials_file, else ./credentials.toml)')
  .action(async (node: string, opts: { file?: string }, cmd: Command) => {
    const { config, out } = await tool(cmd);
    const { authRm, credentialsPath } = await import('./auth.js');
    await authRm(credentialsPath(config, opts.file), out, node);
  });
auth
  .command('ls')
  .description('list the nodes with a credential, their role and how they log in')
  .option('--file <file>', 'credentials file (default hub.credentials_file, else ./credentials.toml)')
  .action(async (opts: { file?: string }, cmd: Command) => {
    const { config, out } = await tool(cmd);
    const { authLs, credentialsPath } = await import('./auth.js');
    authLs(credentialsPath(config, opts.file), out);
  });

auth
  .command('export-mosquitto')
  .description('write mosquitto.conf, passwords and acl that hold Mosquitto to the same policy')
  .argument('<dir>', 'directory for the three files')
  .option('--port <port>', 'the listener port (default hub.port)', integer('port', 1, 65535))
  .option('--host <host>', 'the listener address (default hub.listen_host)')
  .option('--file <file>', 'credentials file (default hub.credentials_file, else ./credentials.toml)')
  .action(async (dir: string, opts: { port?: number; host?: string; file?: string }, cmd: Command) => {
    const { config, out } = await tool(cmd);
    const { authExportMosquitto, credentialsPath } = await import('./auth.js');
    authExportMosquitto(credentialsPath(config, opts.file), config, out, dir, { port: opts.port ?? config.hub.port, host: opts.host ?? config.hub.listen_host, clusters: [config.node.cluster] });
  });

program
  .command('demo')
  .description('run the all-in-one demo on an embedded hub and check what it shows (npm start)')
  .action(async (_opts: unknown, cmd: Command) => {
    // The demo prints its own story; node logs would drown it unless asked for.
    const { config, logger, out } = await tool(cmd, true);
    const { runDemo } = await import('./demo.js');
    process.exitCode = await runDemo(config, logger, out);
  });

/**
 * The error classes whose message is already the one line to show, and those that are usage errors. Loaded
 * only on the error path: a module that threw one is loaded already, and importing another costs nothing
 * that matters when the command has failed.
 */
type ErrorClass = abstract new (...args: never[]) => Error;
interface ErrorClasses {
  readonly plain: readonly ErrorClass[];
  readonly usage: readonly ErrorClass[];
  readonly interrupted: readonly ErrorClass[];
}

async function errorClasses(): Promise<ErrorClasses> {
  const [client, bridgeErrors, config, hub, store, transport] = await Promise.all([
    import('../client/index.js'),
    import('../../firmware-bridge/index.js'),
    import('../config/index.js'),
    import('../hub/index.js'),
    import('../store/index.js'),
    import('../transport/index.js'),
  ]);
  return {
    plain: [config.ConfigError, store.StoreError, UsageError, bridgeErrors.BridgeConfigError, hub.CredentialsError, client.PlanError, transport.TransportError, transport.RemoteError],
    usage: [UsageError, config.ConfigError, client.PlanError, bridgeErrors.BridgeConfigError, hub.CredentialsError],
    interrupted: [client.SubmissionInterrupted],
  };
}

/** One line, no stack: what went wrong and what to do. */
function explain(err: unknown, plain: readonly ErrorClass[]): string {
  if (plain.some((kind) => err instanceof kind)) return (err as Error).message;
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

/** The exit code for an error (see exit-codes.ts): bad usage 2, interrupted 3, anything else 1. */
function exitCodeOf(err: unknown, classes: ErrorClasses): number {
  if (classes.usage.some((kind) => err instanceof kind)) return EXIT_USAGE;
  if (classes.interrupted.some((kind) => err instanceof kind)) return EXIT_NOT_DONE;
  return EXIT_FAILED;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed help, the version or its own one-line error; usage errors exit 2.
    process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
  }
  // A usage error needs nothing else loaded to be told.
  const classes = err instanceof UsageError ? { plain: [UsageError], usage: [UsageError], interrupted: [] } : await errorClasses();
  process.stderr.write(`ucp: ${explain(err, classes.plain)}\n`);
  process.exit(exitCodeOf(err, classes));
}
