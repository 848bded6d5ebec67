import { describe, expect, it } from 'vitest';

import { RingError } from '../../src/ring/index.js';
import { StateMachine } from '../../src/ring/state-machine.js';

type Light = 'red' | 'green' | 'off';

function light(changes: string[]): StateMachine<Light> {
  return new StateMachine<Light>(
    'light',
    { red: ['green', 'off'], green: ['red', 'off'], off: [] },
    'red',
    (from, to) => changes.push(`${from}->${to}`),
  );
}

describe('StateMachine', () => {
  it('moves along the table and reports each change once', () => {
    const changes: string[] = [];
    const machine = light(changes);

    expect(machine.transition(['red'], 'green')).toBe(true);
    expect(machine.transition(['green'], 'off')).toBe(true);

    expect(machine.state).toBe('off');
    expect(changes).toEqual(['red->green', 'green->off']);
  });

  it('returns false, changing nothing, when the current state is not an expected one', () => {
    const changes: string[] = [];
    const machine = light(changes);

    expect(machine.transition(['green'], 'off')).toBe(false);

    expect(machine.state).toBe('red');
    expect(changes).toEqual([]);
  });

  it('throws SL-RING-009 for a move the table does not allow', () => {
    const machine = light([]);
    machine.transition(['red'], 'off');

    expect(() => machine.transition(['off'], 'red')).toThrow(RingError);
    expect(() => machine.transition(['off'], 'red')).toThrow(
      /^\[SL-RING-009\] light cannot move from off to red$/,
    );
    expect(machine.state).toBe('off');
  });
});
