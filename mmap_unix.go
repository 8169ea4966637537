//go:build linux || darwin

package bigqueue

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// This file holds every system call of the package except file allocation
// (allocate_*.go, which differs per kernel). Each helper works on plain
// values: a mapping is a []byte, a file is an *os.File the caller owns.

// mapFile maps size bytes of f read-write and shared. The caller may close
// f right after: the mapping keeps the file alive.
func mapFile(f *os.File, size int) ([]byte, error) {
	if size <= 0 || int64(size) > math.MaxInt {
		return nil, fmt.Errorf("mmap %s: invalid size %d", f.Name(), size)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return b, nil
}

// unmap releases a mapping made by mapFile. Dirty pages stay in the page
// cache; only syncMapping makes them durable.
func unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Munmap(b)
}

// syncMapping writes the dirty pages of b to stable storage and waits
// (msync with MS_SYNC). A failure means the data may be lost.
func syncMapping(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Msync(b, unix.MS_SYNC)
}

// syncDirectory fsyncs dir, so that the files created, renamed or removed
// in it survive a power loss. It needs no lock.
func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w: %w", errSyncNotStarted, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive, non-blocking flock on f. The lock belongs to
// the open file description, so a second open of the same file in this
// process conflicts too. It returns ErrLocked when someone holds it.
func lockDir(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}

// unlockDir releases the lock taken by lockDir.
func unlockDir(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
