/** The outcome of reading a user id: the id, or why there is none. */
export type UserIdResult = { ok: true; userId: string } | { ok: false; detail: string };

/**
 * Whether a UTF-16 code unit is white space or a line terminator, with the
 * same set as `String.prototype.trim`.
 */
export function isWhitespaceCode(code: number): boolean {
  if (code <= 0x20) {
    return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  }

  if (code < 0xa0) {
    return false;
  }

  return (
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/**
 * The longest user id, in UTF-8 bytes. Real ids (UUIDs, hashes, e-mail
 * addresses) are far shorter; every id a shard has seen stays in its
 * dictionary, so without a bound a client could fill a shard's memory with a
 * few thousand huge ids.
 */
export const MAX_USER_ID_BYTES = 1024;

/**
 * Why `[start, end)` of `text` is not a usable user id, or undefined when it
 * is one. A user id is any non-empty text of at most {@link MAX_USER_ID_BYTES}
 * UTF-8 bytes that is not only white space and is well-formed Unicode: a lone
 * surrogate, or U+FFFD (what invalid UTF-8 in the input decodes to), would
 * make different ids one user.
 */
export function userIdTextProblem(text: string, start: number, end: number): string | undefined {
  if (start >= end) {
    return 'user id is empty';
  }

  // A UTF-16 code unit is 1 to 3 UTF-8 bytes: count bytes only where it can matter.
  const units = end - start;
  if (
    units > MAX_USER_ID_BYTES ||
    (units * 3 > MAX_USER_ID_BYTES &&
      Buffer.byteLength(text.slice(start, end), 'utf8') > MAX_USER_ID_BYTES)
  ) {
    return `user id is longer than ${MAX_USER_ID_BYTES} bytes (UTF-8)`;
  }

  let blank = true;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (blank && !isWhitespaceCode(c)) {
      blank = false;
    }
    if (c < 0xd800) {
      continue;
    }
    if (c === 0xfffd) {
      return 'user id contains U+FFFD (invalid UTF-8 in the input, or a replacement character)';
    }
    if (c <= 0xdbff && i + 1 < end) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    if (c <= 0xdfff) {
      return 'user id is not well-formed Unicode (a lone surrogate)';
    }
  }

  return blank ? 'user id is only whitespace' : undefined;
}

/** What kind of JSON value `value` is, for messages. */
export function jsonKindOf(value: unknown): string {
  if (value === null) {
    return 'null';
  }

  return Array.isArray(value) ? 'array' : typeof value;
}

/**
 * Reads a user id from a JSON value (or a CSV field, which is a string).
 *
 * - A string is the user id exactly as written: case-sensitive, never
 *   trimmed. It must not be empty or white space only.
 * - An integer number is the user id of its decimal text (`123` is `"123"`).
 *   Only safe integers (up to 2^53 - 1 in magnitude) are accepted: JSON.parse
 *   has already rounded larger ones, so two different ids could become one.
 * - Anything else (missing, null, boolean, fraction, object, array) is not a
 *   user id.
 */
export function readUserId(value: unknown): UserIdResult {
  if (typeof value === 'string') {
    const problem = userIdTextProblem(value, 0, value.length);

    return problem === undefined ? { ok: true, userId: value } : { ok: false, detail: problem };
  }

  if (typeof value === 'number' && Number.isInteger(value)) {
    if (!Number.isSafeInteger(value)) {
      return {
        ok: false,
        detail: `user id ${value} is an integer beyond 2^53 that JSON numbers cannot hold exactly; send it as a string`,
      };
    }

    return { ok: true, userId: String(value) };
  }

  return { ok: false, detail: describeBadUserId(value) };
}

function describeBadUserId(value: unknown): string {
  if (value === undefined) {
    return 'user id is missing';
  }

  if (value === null) {
    return 'user id is null';
  }

  if (typeof value === 'number') {
    return `user id must be a string or an integer, got number ${value}`;
  }

  return `user id must be a string or an integer, got ${jsonKindOf(value)}`;
}
