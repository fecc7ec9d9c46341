/** The rule on empty prompts, for every way in (GraphQL, REST, CLI). */
import { InferenceError } from './errors.js';
import type { ModelSpec } from './modelFolder.js';

/**
 * BAD_USER_INPUT when a prompt (or one of `prompts`) is empty or only whitespace, unless the model
 * declares that it takes none (edit-server.json `promptOptional`): such a job would change nothing.
 */
export function checkPromptGiven(spec: ModelSpec, prompt: unknown, prompts?: readonly unknown[] | null): void {
  if (!spec.promptRequired) return;
  const blank = (p: unknown): boolean => typeof p === 'string' && p.trim() === '';
  const why = `model ${spec.id} edits what the prompt asks for (e.g. "make it sepia")`;
  if (prompts != null) {
    const i = prompts.findIndex(blank);
    if (i >= 0) throw new InferenceError('BAD_USER_INPUT', `prompts[${i}] is empty: ${why}`);
  } else if (blank(prompt)) {
    throw new InferenceError('BAD_USER_INPUT', `prompt is empty: ${why}`);
  }
}
