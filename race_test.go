//go:build race

package bigqueue

// testRaceEnabled reports whether the tests run under the race detector,
// which makes the exhaustive corruption sweeps ten times slower; they then
// sample their cases more coarsely.
const testRaceEnabled = true
