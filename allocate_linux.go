package bigqueue

import (
	"os"

	"golang.org/x/sys/unix"
)

// allocate reserves size bytes of disk blocks for f and extends it to size,
// so that writes through a mapping can never fail with SIGBUS for lack of
// space: a full disk shows up here as ENOSPC instead.
func allocate(f *os.File, size int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		if err != unix.EINTR {
			return err
		}
	}
}
