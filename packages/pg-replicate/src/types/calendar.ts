/**
 * Proleptic Gregorian calendar arithmetic over astronomical years (1 BC = year 0), as Postgres
 * uses it, plus the small zero-padding helpers the date/time text forms share. JS `Date` covers
 * only ±275 760 years at millisecond precision; Postgres dates reach 5 874 897 AD and timestamps
 * carry microseconds, so the conversions are done here in plain integer arithmetic.
 * Algorithms: Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms".
 */

export const MICROS_PER_SECOND = 1_000_000;
export const MICROS_PER_DAY = 86_400_000_000;
export const SECONDS_PER_DAY = 86_400;

/** Days since 1970-01-01 of a civil date (month 1–12). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** The civil date of a day count since 1970-01-01, as `[year, month, day]`. */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) /
      365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

/** `n` with at least two digits. */
export function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `n` (≥ 0) with at least `width` digits. */
export function padN(n: number, width: number): string {
  const s = String(n);
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

/** `YYYY-MM-DD` as Postgres prints it: year of era, at least 4 digits; the caller adds ` BC`. */
export function formatPgDate(year: number, month: number, day: number): string {
  return `${padN(year <= 0 ? 1 - year : year, 4)}-${pad2(month)}-${pad2(day)}`;
}

/** `YYYY-MM-DD` in ISO 8601: astronomical years, expanded (`+010000`, `-000043`) outside 0–9999. */
export function formatIsoDate(year: number, month: number, day: number): string {
  const y = year >= 0 && year <= 9999 ? padN(year, 4) : year < 0 ? `-${padN(-year, 6)}` : `+${padN(year, 6)}`;
  return `${y}-${pad2(month)}-${pad2(day)}`;
}

/**
 * `HH:MM:SS` plus the fraction: trimmed of trailing zeros (and dropped when zero) as Postgres
 * prints it, or always six digits when `fullFraction` (our ISO form).
 * @param micros microseconds since midnight (up to and including 24:00:00)
 */
export function formatTimeOfDay(micros: number, fullFraction: boolean): string {
  const seconds = Math.floor(micros / MICROS_PER_SECOND);
  const fraction = micros - seconds * MICROS_PER_SECOND;
  const hms = `${pad2(Math.floor(seconds / 3600))}:${pad2(Math.floor(seconds / 60) % 60)}:${pad2(seconds % 60)}`;
  return hms + formatFraction(fraction, fullFraction);
}

/** `.ffffff` for a microsecond count below one second; see {@link formatTimeOfDay}. */
export function formatFraction(fraction: number, full: boolean): string {
  if (full) return `.${padN(fraction, 6)}`;
  if (fraction === 0) return '';
  let digits = padN(fraction, 6);
  let end = 6;
  while (digits.charCodeAt(end - 1) === 0x30) end--;
  if (end < 6) digits = digits.slice(0, end);
  return `.${digits}`;
}

/**
 * A UTC offset the way Postgres prints it: `+05`, `-08`, `+05:30`, `+05:30:15` (minutes only
 * when not zero, seconds only when not zero); with `iso`, always `±HH:MM` and `Z` for zero.
 * @param offsetSeconds seconds east of UTC
 */
export function formatOffset(offsetSeconds: number, iso: boolean): string {
  if (iso && offsetSeconds === 0) return 'Z';
  const sign = offsetSeconds < 0 ? '-' : '+';
  const abs = Math.abs(offsetSeconds);
  const hours = Math.floor(abs / 3600);
  const minutes = Math.floor(abs / 60) % 60;
  const seconds = abs % 60;
  if (seconds !== 0) return `${sign}${pad2(hours)}:${pad2(minutes)}:${pad2(seconds)}`;
  if (minutes !== 0 || iso) return `${sign}${pad2(hours)}:${pad2(minutes)}`;
  return sign + pad2(hours);
}
