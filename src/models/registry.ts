/**
 * The architecture families llm-features runs, one spec each (spec.ts). Adding a family is one file plus one line
 * here: the readers, `random-model`, the memory estimate and the graphs look the spec up rather than knowing families.
 */
import type { Family, ModelConfig } from './config.js';
import { gemmaSpec } from './gemma.js';
import { gemma2Spec } from './gemma2.js';
import { gptNeoxSpec } from './gpt-neox.js';
import { gpt2Spec } from './gpt2.js';
import { llamaSpec } from './llama.js';
import { olmo2Spec } from './olmo2.js';
import { phiSpec } from './phi.js';
import { phi3Spec } from './phi3.js';
import { qwen3Spec } from './qwen3.js';
import type { ArchitectureSpec, TensorSpec } from './spec.js';

export const SPECS: readonly ArchitectureSpec[] = [llamaSpec, gpt2Spec, gemmaSpec, gemma2Spec, qwen3Spec, olmo2Spec, gptNeoxSpec, phiSpec, phi3Spec];

const BY_FAMILY = new Map<Family, ArchitectureSpec>(SPECS.map((s) => [s.family, s]));

export function specOf(cfg: ModelConfig | Family): ArchitectureSpec {
  const family = typeof cfg === 'string' ? cfg : cfg.arch;
  const spec = BY_FAMILY.get(family);
  if (!spec) throw new Error(`no architecture spec for family ${family}`);
  return spec;
}

/** The spec that reads a config.json: by `architectures[0]`, else by `model_type`; null when none does. */
export function specForHfConfig(json: Record<string, unknown>): ArchitectureSpec | null {
  const arch = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
  if (typeof arch === 'string') {
    const byClass = SPECS.find((s) => s.hfClasses.includes(arch));
    if (byClass) return byClass;
  }
  return SPECS.find((s) => typeof json.model_type === 'string' && s.modelTypes.includes(json.model_type)) ?? null;
}

/** The spec of a GGUF `general.architecture`, or null. */
export function specForGguf(arch: string): ArchitectureSpec | null {
  return SPECS.find((s) => s.ggufArch === arch) ?? null;
}

/** Every model_type the registry reads, for error messages. */
export function supportedModelTypes(): string[] {
  return SPECS.flatMap((s) => s.modelTypes);
}

/** The spec's tensor list for a config, by block-code name (memory estimate, binding checks). */
export function tensorsByName(cfg: ModelConfig): Map<string, TensorSpec> {
  return new Map(specOf(cfg).tensors(cfg).map((t) => [t.name, t]));
}
