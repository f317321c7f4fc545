import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { NodeRuntime } from '../transport/index.js';
import { openClientNode } from './client-identity.js';
import { EXIT_NOT_DONE, EXIT_OK } from './exit-codes.js';
import type { Output } from './inspect.js';
import { waits } from './settings.js';

export interface NoticeOptions {
  severity: 'info' | 'warning' | 'critical';
  /** Seconds to wait for delivery; 0 means queue it and return at once. */
  timeoutS: number;
}


/**
 * `ucp notice NODE TEXT`: an operator notice, sent from this client's durable outbox. If NODE is down the
 * notice stays queued in the client's data directory and goes out the next time any client command runs
 * there (`ucp outbox --wait` delivers what is pending).
 */
export async function sendNotice(config: UcpConfig, logger: Logger, out: Output, node: string, text: string, options: NoticeOptions): Promise<number> {
  const client = openClient(config, logger);
  try {
    // Stored before any attempt to reach the hub: a notice typed while the hub is down is not lost.
    const id = await client.link.sendDurable(node, 'notice', { severity: options.severity, text });
    const delivered = await waitDelivered(client, config.hub.url, [id], options.timeoutS);
    report(out, { id, to: node, delivered });
    return delivered ? EXIT_OK : EXIT_NOT_DONE;
  } finally {
    await client.stop();
  }
}

/** `ucp outbox [--wait S]`: lists what this client still owes other nodes and waits for it to go out. */
export async function flushOutbox(config: UcpConfig, logger: Logger, out: Output, timeoutS: number): Promise<number> {
  const client = openClient(config, logger);
  try {
    const pending = client.link.pendingMessages();
    const delivered = await waitDelivered(client, config.hub.url, pending.map((m) => m.id), timeoutS);
    const left = client.link.pendingMessages();
    if (out.json) out.print(JSON.stringify({ pending: pending.length, delivered: pending.length - left.length, left: left.map((m) => ({ id: m.id, to: m.to, kind: m.kind })) }));
    else {
      out.print(`${pending.length - left.length} of ${pending.length} pending messages delivered`);
      for (const m of left) out.print(`still queued: ${m.kind} ${m.id} for ${m.to}`);
    }
    return delivered ? EXIT_OK : EXIT_NOT_DONE;
  } finally {
    await client.stop();
  }
}

function openClient(config: UcpConfig, logger: Logger): NodeRuntime {
  return openClientNode(config, logger, { watchPresence: true });
}

/** Connects and waits for the acknowledgements, giving up (with everything still safely queued) after `timeoutS`. */
async function waitDelivered(client: NodeRuntime, hubUrl: string, ids: string[], timeoutS: number): Promise<boolean> {
  if (ids.length === 0) return true;
  if (timeoutS <= 0) return false;
  let timer: NodeJS.Timeout | undefined;
  // Connecting counts against the timeout too: an unreachable hub must not make the command hang.
  // Stopping the client after a timeout rejects what is still pending; that is the queued outcome.
  const connecting = waits.begin(`waiting for the hub at ${hubUrl} to deliver (up to ${timeoutS} s)`);
  const all = client
    .connect()
    .finally(connecting)
    .then(() => Promise.all(ids.map((id) => client.link.delivered(id))))
    .then(
      () => true,
      () => false,
    );
  const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutS * 1_000)));
  try {
    return await Promise.race([all, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function report(out: Output, r: { id: string; to: string; delivered: boolean }): void {
  if (out.json) out.print(JSON.stringify(r));
  else if (r.delivered) out.print(`notice ${r.id} delivered to ${r.to}`);
  else out.print(`notice ${r.id} queued for ${r.to}; it is not reachable yet. Run \`ucp outbox --wait 60\` later to deliver it.`);
}
