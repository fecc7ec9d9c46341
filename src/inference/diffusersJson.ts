/**
 * diffusers writes its configs with Python's `json.dumps`, which emits the non-JSON literals
 * `Infinity`, `-Infinity` and `NaN` (DPMSolverMultistepScheduler's default `lambda_min_clipped` is
 * -inf, so real scheduler_config.json files carry `"lambda_min_clipped": -Infinity`).
 */

const LITERALS: Readonly<Record<string, number>> = { '-Infinity': -Infinity, Infinity: Infinity, NaN: NaN };

/** `JSON.parse` that also reads Python's `Infinity`, `-Infinity` and `NaN` outside strings. */
export function parseDiffusersJson(text: string): unknown {
  // Swap each literal for a string that JSON cannot otherwise produce, then map it back.
  const marker = '\u0000py:';
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
      continue;
    }
    const literal = Object.keys(LITERALS).find((l) => text.startsWith(l, i));
    if (literal) {
      out += JSON.stringify(marker + literal);
      i += literal.length - 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out, (_key, value: unknown) => (typeof value === 'string' && value.startsWith(marker) ? LITERALS[value.slice(marker.length)] : value));
}
