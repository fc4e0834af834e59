/**
 * Builds protocol bytes by hand for the wire tests, field by field as the spec lists them
 * (big-endian integers, NUL-terminated strings), so each test buffer reads like the layout table it
 * comes from. https://www.postgresql.org/docs/current/protocol-message-types.html
 */

export class BufferBuilder {
  readonly #parts: Buffer[] = [];

  /** One byte: a number, or a one-character tag such as `'B'`. */
  int8(value: number | string): this {
    const byte = typeof value === 'string' ? value.charCodeAt(0) : value;
    this.#parts.push(Buffer.from([byte & 0xff]));
    return this;
  }

  int16(value: number): this {
    const part = Buffer.alloc(2);
    part.writeInt16BE(value);
    this.#parts.push(part);
    return this;
  }

  /** Signed or unsigned 32-bit (values above 2^31 are written as unsigned). */
  int32(value: number): this {
    const part = Buffer.alloc(4);
    if (value > 0x7fffffff) part.writeUInt32BE(value);
    else part.writeInt32BE(value);
    this.#parts.push(part);
    return this;
  }

  /** Signed or unsigned 64-bit (values above 2^63 are written as unsigned). */
  int64(value: bigint): this {
    const part = Buffer.alloc(8);
    if (value > 0x7fffffffffffffffn) part.writeBigUInt64BE(value);
    else part.writeBigInt64BE(value);
    this.#parts.push(part);
    return this;
  }

  /** A UTF-8 string and its NUL terminator. */
  cstring(value: string): this {
    this.#parts.push(Buffer.from(value, 'utf8'), Buffer.from([0]));
    return this;
  }

  /** Raw bytes, or a string as UTF-8 (no terminator). */
  bytes(value: Buffer | Uint8Array | string): this {
    this.#parts.push(typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value));
    return this;
  }

  get length(): number {
    let total = 0;
    for (const part of this.#parts) total += part.length;
    return total;
  }

  build(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** Shorthand for `new BufferBuilder()`. */
export function bytes(): BufferBuilder {
  return new BufferBuilder();
}

/** A backend/frontend message: Byte1 code, Int32 length (counting itself), then the body. */
export function message(code: string, body: Buffer = Buffer.alloc(0)): Buffer {
  return bytes()
    .int8(code)
    .int32(body.length + 4)
    .bytes(body)
    .build();
}

/** `CopyData` (`d`) carrying `payload`. */
export function copyData(payload: Buffer | string): Buffer {
  return message('d', typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload);
}

/** `CopyOutResponse` (`H`) or `CopyBothResponse` (`W`): text format, `columns` columns. */
export function copyResponse(code: 'H' | 'W', columns = 0): Buffer {
  const body = bytes().int8(0).int16(columns);
  for (let i = 0; i < columns; i++) body.int16(0);
  return message(code, body.build());
}

/** `CommandComplete` (`C`) with its tag. */
export function commandComplete(tag: string): Buffer {
  return message('C', bytes().cstring(tag).build());
}

/** `ReadyForQuery` (`Z`), idle. */
export function readyForQuery(): Buffer {
  return message('Z', bytes().int8('I').build());
}

/** `ErrorResponse` (`E`) or `NoticeResponse` (`N`) with severity, SQLSTATE and message fields. */
export function errorOrNotice(code: 'E' | 'N', sqlState: string, text: string): Buffer {
  const severity = code === 'E' ? 'ERROR' : 'NOTICE';
  return message(
    code,
    bytes()
      .int8('S')
      .cstring(severity)
      .int8('V')
      .cstring(severity)
      .int8('C')
      .cstring(sqlState)
      .int8('M')
      .cstring(text)
      .int8(0)
      .build(),
  );
}

/** Replication `XLogData` (`w`) payload around one pgoutput message. */
export function xlogData(walStart: bigint, walEnd: bigint, sendTime: bigint, pgoutput: Buffer): Buffer {
  return bytes().int8('w').int64(walStart).int64(walEnd).int64(sendTime).bytes(pgoutput).build();
}

/** Replication primary keepalive (`k`) payload. */
export function keepalive(walEnd: bigint, sendTime: bigint, replyRequested: boolean): Buffer {
  return bytes()
    .int8('k')
    .int64(walEnd)
    .int64(sendTime)
    .int8(replyRequested ? 1 : 0)
    .build();
}
