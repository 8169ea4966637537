package bigqueue

import (
	"os"

	"golang.org/x/sys/unix"
)

// fullAllocation is false where allocate can reserve a prefix of a file
// without touching its size: arena files are then reserved in steps.
const fullAllocation = false

// allocate reserves disk blocks for the first size bytes of f, extending
// it to size when it is shorter, so that writes through a mapping into
// that range can never fail with SIGBUS for lack of space: a full disk
// shows up here as ENOSPC instead. Blocks already reserved are kept.
func allocate(f *os.File, size int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		if err != unix.EINTR {
			return err
		}
	}
}
