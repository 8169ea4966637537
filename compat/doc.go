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
// Each is deliberate; see docs/SWITCHING.md for the list users read.
//
//  1. Disk is reclaimed. Arenas every consumer has read past are removed
//     after a flush, so a consumer created later starts at the oldest
//     message still stored; in the original, which never deletes, it
//     starts at the first message ever written. The differential test
//     keeps both comparable with a consumer that never reads, created
//     first; TestNewConsumerAfterReclaim shows the difference.
//  2. The original's directories are refused with ErrForeignQueue, and
//     imported with migrate.Import, instead of being opened.
//  3. Consumer names must be 1 to MaxConsumerNameLen bytes
//     (ErrInvalidName); the original took any name, the empty one too.
//  4. A message is at most MaxMessageSize bytes (ErrTooLarge); an arena
//     is at most MaxArenaSize (ErrTooLargeArenaSize at open). The
//     original took any message, and any arena size its file system
//     could hold as one file.
//  5. Misuse returns errors where the original panicked or crashed:
//     FromConsumer with a nil consumer (ErrNoConsumer), any call after
//     Close (ErrClosed; a second Close returns nil).
//  6. A directory is locked while open: a second NewQueue on it returns
//     ErrLocked; the original let two queues corrupt each other.
//  7. Errors the original wrapped are wrapped differently (its messages
//     said "error in ... ::"); only the bare ones compare with ==.
package compat
