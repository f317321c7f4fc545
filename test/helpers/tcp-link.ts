import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from './processes.js';

/**
 * A TCP proxy standing for a radio link: it can be cut (every connection through it closed, new ones
 * refused), frozen (connections stay open but nothing crosses, as when a link fades without either end
 * noticing), and healed.
 */
export class TcpLink {
  private readonly sockets = new Set<Socket>();
  private cut = false;
  private frozen = false;
  private server?: Server;

  async start(targetPort: number): Promise<number> {
    const port = await freePort();
    this.server = createServer((inbound) => {
      if (this.cut) {
        inbound.destroy();
        return;
      }
      const outbound = connect({ host: '127.0.0.1', port: targetPort });
      for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
        this.sockets.add(from);
        from.setNoDelay(true);
        from.on('error', () => undefined);
        from.on('close', () => {
          this.sockets.delete(from);
          inbound.destroy();
          outbound.destroy();
        });
        from.on('data', (chunk) => {
          if (!this.frozen) to.write(chunk);
        });
      }
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    return port;
  }

  /** Closes every connection through the link and refuses new ones until heal(). */
  partition(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  /** Drops whatever either side sends, without closing anything: neither end can tell at once. */
  freeze(): void {
    this.frozen = true;
  }

  /**
   * Lets connections through again. Connections that were frozen are closed (what they dropped left their
   * byte streams unusable), so their clients reconnect.
   */
  heal(): void {
    if (this.frozen) for (const s of this.sockets) s.destroy();
    this.frozen = false;
    this.cut = false;
  }

  async stop(): Promise<void> {
    this.partition();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
