import { UserError } from '../errors.js';
import { DEVICES, probeDevice, resolveDevice, type DeviceReport } from '../engine/device.js';
import { printJson, type Command } from './command.js';

export const devicesCommand: Command = {
  name: 'devices',
  summary: 'probe where the graphs can run (cpu, webgpu) as JSON; with --device, exit 2 and say why when it cannot',
  async run(v) {
    const only = v.str('device') === undefined ? undefined : resolveDevice(v.str('device'));
    const reports: DeviceReport[] = [];
    for (const d of only ? [only] : DEVICES) reports.push(await probeDevice(d));
    const missing = only ? reports.find((r) => !r.available) : undefined;
    if (missing) throw new UserError(`--device ${missing.device}: ${missing.reason}`);
    printJson({ devices: reports });
  },
};

/** For `inspect --device D`: the probe, or a one-line refusal when the device is not there. */
export async function requireDevice(flag: string): Promise<DeviceReport> {
  const report = await probeDevice(resolveDevice(flag));
  if (!report.available) throw new UserError(`--device ${report.device}: ${report.reason}`);
  return report;
}
