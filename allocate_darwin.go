package bigqueue

import (
	"errors"
	"os"
)

// fullAllocation is true: darwin has no fallocate that reserves a prefix
// of a file without writing it, so arena files are allocated in full when
// they are created.
const fullAllocation = true

// allocate reserves the bytes [from, to) of f by reading and writing them
// back (zeros past the end of the file), since darwin has no fallocate. It is slower than on Linux
// but gives the same guarantee: a full disk fails here, not in a write
// through the mapping.
func allocate(f *os.File, from, to int64) error { return rewrite(f, from, to) }

// noCOW does nothing on darwin: APFS clones only on request.
func noCOW(*os.File) {}

// prefault is not available on darwin: the writer takes its own page
// faults.
func prefault([]byte) error { return errors.ErrUnsupported }
