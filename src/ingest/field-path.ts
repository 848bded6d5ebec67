/**
 * Reads one value out of a parsed JSON record.
 *
 * A path is a list of keys joined by dots: `actor.login` reads
 * `record.actor.login`. A key that itself contains a dot is written with a
 * backslash before the dot (`a\.b` reads the key `a.b`), and a literal
 * backslash as `\\`. A key that is a number indexes an array (`tags.0`).
 * Only own properties count, so `constructor` or `toString` never reach into
 * the prototype.
 *
 * The returned function gives `undefined` when a key is missing or a value on
 * the way is not an object.
 *
 * CSV does not use paths: there the field is a header column name, matched
 * exactly, dots and all.
 *
 * @throws Error when the path is empty, has an empty key (`a..b`, `.a`) or
 *   ends in a lone backslash
 */
export function compileFieldPath(path: string): (record: unknown) => unknown {
  const keys = splitFieldPath(path);

  if (keys.length === 1) {
    const [key] = keys as [string];

    return (record) => ownValue(record, key);
  }

  return (record) => {
    let value = record;
    for (const key of keys) {
      value = ownValue(value, key);
      if (value === undefined) {
        return undefined;
      }
    }

    return value;
  };
}

/** Splits a field path into its keys, undoing the `\.` and `\\` escapes. */
export function splitFieldPath(path: string): string[] {
  const keys: string[] = [];
  let key = '';
  for (let i = 0; i < path.length; i++) {
    const ch = path[i];
    if (ch === '\\') {
      const next = path[i + 1];
      if (next === undefined) {
        throw new Error(
          `field path '${path}' ends in a lone backslash; write \\\\ for a backslash`,
        );
      }

      key += next;
      i++;
    } else if (ch === '.') {
      keys.push(key);
      key = '';
    } else {
      key += ch;
    }
  }
  keys.push(key);

  if (keys.some((k) => k.length === 0)) {
    throw new Error(
      `field path '${path}' has an empty key; write a\\.b for a key that contains a dot`,
    );
  }

  return keys;
}

function ownValue(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, key)) {
    return undefined;
  }

  return (value as Record<string, unknown>)[key];
}
