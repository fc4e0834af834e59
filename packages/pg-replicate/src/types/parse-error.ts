/**
 * The one error every text parser throws. A value that does not parse means the server and we
 * disagree about the wire format (session settings, a type we misread), so it is a protocol
 * violation, not bad user input — and it must name the type and show the value to be fixable.
 */
import { PgReplicateError } from '../errors.js';
import type { TextParser } from './text-parsers.js';
import type { PgValue } from './values.js';

/** Long values (1 MB of TOASTed text) are cut so the message stays one readable line. */
const MAX_SHOWN = 80;

/**
 * A `PROTOCOL_VIOLATION` error for text that is not a valid `typeName` value.
 * @param reason what exactly was wrong, when the parser knows
 */
export function malformed(typeName: string, text: string, reason?: string): PgReplicateError {
  return new PgReplicateError(
    'PROTOCOL_VIOLATION',
    `${describe(typeName, text)}${reason ? `: ${reason}` : ''}`,
    {
      hint: 'values are read in the text form of the pinned session settings (TimeZone=UTC, DateStyle=ISO, IntervalStyle=postgres, bytea_output=hex); register a parser for this type if it has its own format',
    },
  );
}

function describe(typeName: string, text: string): string {
  const shown = text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}… (${text.length} chars)` : text;
  return `malformed ${typeName} value ${JSON.stringify(shown)}`;
}

/**
 * Runs an element's (field's, bound's) parser; its failure is reported inside the container's
 * value, so a bad field deep in an array of composites still says where it sat.
 */
export function parseNested(parse: TextParser, text: string, typeName: string, whole: string): PgValue {
  try {
    return parse(text);
  } catch (error) {
    if (!(error instanceof PgReplicateError)) throw error;
    throw new PgReplicateError(error.code, `${describe(typeName, whole)}: ${error.message}`, {
      hint: error.hint,
      cause: error,
    });
  }
}
