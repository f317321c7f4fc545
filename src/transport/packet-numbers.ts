import mqttPacket from 'mqtt-packet';

/**
 * mqtt-packet, which both the hub (aedes) and every node's client write packets with, by default builds a
 * table of 65,536 two-byte Buffers on its first write, one per packet id, to look them up instead of
 * writing two bytes: 6 MiB of heap in every process for a saving nobody here can measure. Writing the two
 * bytes each time instead must be chosen before the first packet is written (the table is never freed).
 */
export function writePacketNumbersUncached(): void {
  mqttPacket.writeToStream.cacheNumbers = false;
}
