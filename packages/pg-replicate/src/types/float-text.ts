/**
 * Postgres' text form of float4/float8 (extra_float_digits > 0, i.e. the shortest digits that
 * read back exactly, laid out like printf `%g`), so a float decoded to a JS number can be printed
 * again exactly as the server printed it. JS finds the same shortest digits; only the layout
 * (when to switch to an exponent, `e+20` vs `e20`) and float4's shorter digits differ.
 */

/**
 * float8 as the server prints it: `1e+20`, `1.5e-07`, `-0`, `NaN`, `Infinity`.
 */
export function formatFloat8(value: number): string {
  // Integers below 1e15 print the same in both worlds: skip the digit shuffling.
  if (Number.isInteger(value) && value < 1e15 && value > -1e15 && !Object.is(value, -0)) return String(value);
  const special = specialText(value);
  if (special !== undefined) return special;
  return layout(value.toExponential(), 15);
}

/**
 * float4 as the server prints it: the shortest digits that round-trip through single precision
 * (`0.1`, not the `0.10000000149011612` the widened float would print). Accepts both the float4
 * itself and the double nearest its printed digits (what the float4 parser returns).
 */
export function formatFloat4(value: number): string {
  const special = specialText(value);
  if (special !== undefined) return special;
  const single = Math.fround(value);
  for (let digits = 1; digits < 9; digits++) {
    const candidate = single.toExponential(digits - 1);
    if (Math.fround(Number(candidate)) === single) return layout(candidate, 6);
  }
  return layout(single.toExponential(8), 6);
}

function specialText(value: number): string | undefined {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return 'Infinity';
  if (value === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  return undefined;
}

/**
 * Re-lays out JS exponential notation (`-1.25e+3`) the way the server's Ryu output does: fixed
 * notation when the decimal exponent is in [-4, maxFixed), else `d.ddde±XX` (at least two
 * exponent digits).
 */
function layout(exponential: string, maxFixed: number): string {
  const e = exponential.indexOf('e');
  const exponent = Number(exponential.slice(e + 1));
  const negative = exponential.charCodeAt(0) === 0x2d;
  const mantissa = exponential.slice(negative ? 1 : 0, e);
  const digits = mantissa.length > 1 ? mantissa[0] + mantissa.slice(2) : mantissa;
  const sign = negative ? '-' : '';
  if (exponent >= -4 && exponent < maxFixed) {
    if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
    if (digits.length <= exponent + 1) return sign + digits + '0'.repeat(exponent + 1 - digits.length);
    return `${sign}${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
  }
  const magnitude = Math.abs(exponent);
  return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${magnitude < 10 ? '0' : ''}${magnitude}`;
}
