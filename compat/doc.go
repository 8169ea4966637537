// Package compat proves github.com/bigqueue-go/bigqueue a drop-in
// replacement for github.com/grandecola/bigqueue v0.6.0 (the original). It
// is a module of its own so that the library's module never requires the
// original. It holds only tests:
//
//   - differential_test.go runs the same random sequence of operations on
//     both libraries and compares every result, values and errors (bare,
//     by ==), except the deviations below;
//   - examples_test.go replays the original's example programs (basic,
//     config, consumer, extsort) on both;
//   - import_test.go writes directories with the original and imports
//     them with the migrate sub-package.
//
// # Deviations from the original
//
// The deviations, each with its reason, are listed in docs/SWITCHING.md;
// the tests run around these:
//
//   - 1, disk is reclaimed: a consumer created after a reclaim starts at
//     the oldest message still stored, not at the first ever written. The
//     differential test creates a consumer "pin" first in both queues,
//     which never reads, so that nothing is reclaimed;
//     TestNewConsumerAfterReclaim shows the difference.
//   - 3 and 4, names and sizes are bounded: the random operations use
//     valid names and sizes only.
//   - 5, the stored arena size is used when none is given: the test
//     always passes the size it opened with.
//   - 6, misuse returns errors: the test never uses the original after
//     Close, or FromConsumer with nil, which crash it.
//   - 8, NewQueue creates a missing directory: the test opens both in
//     existing ones.
package compat
