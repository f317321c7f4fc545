import { encodeSparkplug } from '../sparkplug/payload.js';

/** One message a simulated device publishes. */
export interface Publication {
  readonly topic: string;
  readonly payload: Buffer | string;
  readonly retain?: boolean;
}

/** How a simulated device answers a command: the topic and payload of its acknowledgement. */
export type Answer = (topic: string, payload: Buffer) => Publication[] | undefined;

export interface Profile {
  /** Subscriptions for commands the devices answer. */
  readonly commandFilters: readonly string[];
  /** Published once on connecting (births). */
  start(): Publication[];
  /** The n-th reading of device d at time `now`. */
  reading(d: number, n: number, now: number): Publication[];
  answer: Answer;
  /** The last will, if the profile has one (Sparkplug's NDEATH). */
  will?(): Publication;
}

export const PROFILES = ['esphome', 'tasmota', 'chirpstack', 'sparkplug'] as const;
export type ProfileName = (typeof PROFILES)[number];

/** A slow sine plus noise: values a tank level or a temperature could have. */
function wave(d: number, n: number, base: number, swing: number): number {
  return Math.round((base + swing * Math.sin((n + d * 7) / 20) + (Math.random() - 0.5) * swing * 0.1) * 100) / 100;
}

const deviceName = (prefix: string, d: number) => `${prefix}-${String(d + 1).padStart(3, '0')}`;

/** Every profile also answers the generic `devices/<id>/cmd` with `devices/<id>/ack`. */
function genericAnswer(topic: string): Publication[] | undefined {
  const m = /^devices\/([^/]+)\/cmd$/.exec(topic);
  return m === null ? undefined : [{ topic: `devices/${m[1]}/ack`, payload: 'done' }];
}

function esphome(): Profile {
  return {
    commandFilters: ['+/switch/+/command', 'devices/+/cmd'],
    start: () => [],
    reading: (d, n) => {
      const dev = deviceName('esp', d);
      return n % 2 === 0 ? [{ topic: `${dev}/sensor/temperature/state`, payload: String(wave(d, n, 21, 4)) }] : [{ topic: `${dev}/sensor/level/state`, payload: String(wave(d, n, 60, 30)) }];
    },
    // ESPHome confirms a switch command by publishing the switch's new state.
    answer: (topic, payload) => {
      const m = /^([^/]+)\/switch\/([^/]+)\/command$/.exec(topic);
      if (m !== null) return [{ topic: `${m[1]}/switch/${m[2]}/state`, payload: payload.toString().toUpperCase() === 'ON' ? 'ON' : 'OFF' }];
      return genericAnswer(topic);
    },
  };
}

function tasmota(): Profile {
  return {
    commandFilters: ['cmnd/+/+', 'devices/+/cmd'],
    start: () => [],
    reading: (d, n, now) => [
      {
        topic: `tele/${deviceName('tasmota', d)}/SENSOR`,
        payload: JSON.stringify({ Time: new Date(now).toISOString().slice(0, 19), AM2301: { Temperature: wave(d, n, 21, 4), Humidity: wave(d, n, 50, 10) }, TempUnit: 'C' }),
      },
    ],
    // Tasmota answers `cmnd/<dev>/POWER ON` on `stat/<dev>/RESULT` with {"POWER":"ON"}.
    answer: (topic, payload) => {
      const m = /^cmnd\/([^/]+)\/([^/]+)$/.exec(topic);
      if (m !== null) return [{ topic: `stat/${m[1]}/RESULT`, payload: JSON.stringify({ [m[2]!]: payload.toString() || 'ON' }) }];
      return genericAnswer(topic);
    },
  };
}

function chirpstack(): Profile {
  const eui = (d: number) => `70b3d57ed0${String(d).padStart(6, '0')}`;
  return {
    commandFilters: ['application/+/device/+/command/down', 'devices/+/cmd'],
    start: () => [],
    reading: (d, n, now) => [
      {
        topic: `application/sim/device/${eui(d)}/event/up`,
        payload: JSON.stringify({
          deduplicationId: `${d}-${n}`,
          time: new Date(now).toISOString(),
          deviceInfo: { applicationId: 'sim', deviceName: deviceName('lora', d), devEui: eui(d) },
          fCnt: n,
          fPort: 2,
          object: { temperature: wave(d, n, 18, 6), humidity: wave(d, n, 60, 15), battery: Math.max(0, 100 - Math.floor(n / 100)) },
          rxInfo: [{ gatewayId: '0016c001ff10d3f6', rssi: -70 - (d % 30), snr: 7.5 }],
        }),
      },
    ],
    // A downlink is acknowledged by the device on its next uplink: ChirpStack publishes an ack event.
    answer: (topic) => {
      const m = /^application\/([^/]+)\/device\/([^/]+)\/command\/down$/.exec(topic);
      if (m !== null) return [{ topic: `application/${m[1]}/device/${m[2]}/event/ack`, payload: JSON.stringify({ acknowledged: true, deviceInfo: { devEui: m[2] } }) }];
      return genericAnswer(topic);
    },
  };
}

function sparkplug(devices: number): Profile {
  const group = 'sim';
  const node = 'sim-edge';
  let bdSeq = 0;
  let seq = 0;
  const next = () => {
    const s = seq;
    seq = (seq + 1) % 256;
    return s;
  };
  const values: number[] = Array.from({ length: devices }, () => 50);
  const births = (): Publication[] => {
    seq = 0;
    const out: Publication[] = [
      { topic: `spBv1.0/${group}/NBIRTH/${node}`, payload: Buffer.from(encodeSparkplug({ timestamp: Date.now(), seq: next(), metrics: [{ name: 'bdSeq', type: 'Int64', value: bdSeq }, { name: 'Node Control/Rebirth', type: 'Boolean', value: false }] })) },
    ];
    for (let d = 0; d < devices; d++) {
      out.push({
        topic: `spBv1.0/${group}/DBIRTH/${node}/${deviceName('plc', d)}`,
        payload: Buffer.from(encodeSparkplug({ timestamp: Date.now(), seq: next(), metrics: [{ name: 'Tank/Level', alias: d * 2 + 1, type: 'Float', value: values[d]! }, { name: 'Pump/Run', alias: d * 2 + 2, type: 'Boolean', value: false }] })),
      });
    }
    return out;
  };
  return {
    commandFilters: [`spBv1.0/${group}/NCMD/${node}`, `spBv1.0/${group}/DCMD/${node}/+`, 'devices/+/cmd'],
    start: births,
    reading: (d, n) => {
      values[d] = wave(d, n, 50, 40);
      return [{ topic: `spBv1.0/${group}/DDATA/${node}/${deviceName('plc', d)}`, payload: Buffer.from(encodeSparkplug({ timestamp: Date.now(), seq: next(), metrics: [{ alias: d * 2 + 1, type: 'Float', value: values[d]! }] })) }];
    },
    answer: (topic, payload) => {
      if (topic === `spBv1.0/${group}/NCMD/${node}`) return births();
      const m = new RegExp(`^spBv1\\.0/${group}/DCMD/${node}/([^/]+)$`).exec(topic);
      if (m !== null) {
        // The device applies the command and reports the new value as data.
        void payload;
        return [{ topic: `spBv1.0/${group}/DDATA/${node}/${m[1]}`, payload: Buffer.from(encodeSparkplug({ timestamp: Date.now(), seq: next(), metrics: [{ name: 'Pump/Run', type: 'Boolean', value: true }] })) }];
      }
      return genericAnswer(topic);
    },
    will: () => ({ topic: `spBv1.0/${group}/NDEATH/${node}`, payload: Buffer.from(encodeSparkplug({ timestamp: Date.now(), metrics: [{ name: 'bdSeq', type: 'Int64', value: bdSeq }] })) }),
  };
}

export function profile(name: ProfileName, devices: number): Profile {
  switch (name) {
    case 'esphome':
      return esphome();
    case 'tasmota':
      return tasmota();
    case 'chirpstack':
      return chirpstack();
    case 'sparkplug':
      return sparkplug(devices);
  }
}
