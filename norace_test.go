//go:build !race

package bigqueue

// testRaceEnabled reports whether the tests run under the race detector;
// see race_test.go.
const testRaceEnabled = false
