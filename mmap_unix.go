//go:build linux || darwin

package bigqueue

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"

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

// freshPrefix is how much of a new arena's mapping noReadAround covers.
// It is more than prefaultWindow, so that the prefaulter, which
// populates that far ahead of the writer, is past it before the writer
// needs a page beyond it.
const freshPrefix = 4 << 20

// noReadAround advises the kernel that the first freshPrefix bytes of
// data, the mapping of a file just created, are accessed at random
// (MADV_RANDOM), so that a fault there maps one page. Without it, the
// first access to a new file's mapping has the kernel fill a whole
// read-ahead window around the page first (read_ahead_kb: 8 MiB on this
// project's test machine, 3.2 to 4.1 ms of zeroing before the first
// Enqueue into a new queue of 128 MiB arenas returned; 0.16 to 0.27 ms
// with it). Past the prefix the prefaulter's populate calls still take
// read-ahead windows, ahead of the writer. Only mappings of more than
// twice freshPrefix are advised: in a smaller arena the window is the
// arena, filled in one go, where a fault per page costs more (an arena
// of 128 KiB advised whole took 27,000 major faults in a steady-state run
// where it took 1,000). A consumer of this process reading the prefix
// back finds its pages in the page cache, unless memory pressure evicted
// them; it then reads them from disk a page per fault. The advice is
// only that: a kernel that refuses it (EINVAL where it is unknown,
// ENOMEM where splitting the mapping in two would pass vm.max_map_count)
// leaves the mapping as it was, which loses speed, not data, so its
// error is dropped.
func noReadAround(data []byte) {
	if len(data) > 2*freshPrefix {
		_ = unix.Madvise(data[:freshPrefix], unix.MADV_RANDOM)
	}
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

// syncDirectory opens the directory at path and fsyncs it. NewQueue uses
// it for the parents of the directories it creates; the queue directory
// itself is synced through its descriptor (queueDir.sync).
func syncDirectory(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", path, err)
	}
	return nil
}

// openDirectory opens the directory at path read-only. It fails with
// ENOTDIR for anything else, a symlink to a directory being followed.
func openDirectory(path string) (*os.File, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openAt opens name inside the directory dir with flags (O_CLOEXEC and
// O_NOFOLLOW added: a symlink planted in the queue directory is refused,
// not followed). The file is named by dir's path joined with name.
func openAt(dir *os.File, name string, flags int, perm uint32) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Openat(int(dir.Fd()), name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, perm)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// renameAt renames from to to, both inside the directory dir.
func renameAt(dir *os.File, from, to string) error {
	if err := unix.Renameat(int(dir.Fd()), from, int(dir.Fd()), to); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(dir.Name(), from), New: filepath.Join(dir.Name(), to), Err: err}
	}
	return nil
}

// unlinkAt removes the file name inside the directory dir.
func unlinkAt(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return nil
}

// fileID identifies a file: two names with the same fileID are the same
// file.
type fileID struct{ dev, ino uint64 }

// fileStat is what statAt tells of a file.
type fileStat struct {
	id   fileID
	size int64
}

// statAt returns the identity and size of the file name inside the
// directory dir, without following a symlink.
func statAt(dir *os.File, name string) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileStat{}, &os.PathError{Op: "stat", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return fileStat{id: fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, size: st.Size}, nil
}

// statFile returns the identity and size of the open file f.
func statFile(f *os.File) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileStat{}, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	return fileStat{id: fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, size: st.Size}, nil
}

// listAt returns the names in the directory dir, "." and ".." left out.
// It reads through a descriptor of its own, so that dir's offset is never
// moved, and on Linux without an *os.File, whose setup costs system calls
// of its own (NewQueue lists the directory on every open). On darwin,
// x/sys emulates getdents by reading the directory again from its start
// at every call, so package os lists it there.
func listAt(dir *os.File) ([]string, error) {
	if runtime.GOOS == "darwin" {
		return listAtFile(dir)
	}
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir.Name(), Err: err}
	}
	buf := make([]byte, 8<<10)
	names := []string{} // not nil: an empty directory is a listing too (queueDir.listed)
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, errors.Join(&os.PathError{Op: "readdirent", Path: dir.Name(), Err: err}, unix.Close(fd))
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	if err := unix.Close(fd); err != nil {
		return nil, &os.PathError{Op: "close", Path: dir.Name(), Err: err}
	}
	return names, nil
}

// listAtFile is listAt through package os.
func listAtFile(dir *os.File) ([]string, error) {
	d, err := openAt(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{} // as listAt: an empty directory is a listing too
	}
	return names, nil
}

// ignoringEINTR retries open calls interrupted by a signal, as package os
// does for its own.
func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		fd, err := fn()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// lockDir takes an exclusive, non-blocking flock on f, the queue
// directory. The lock belongs to the open file description, so a second
// open of the same directory in this process conflicts too; and it is on
// the directory itself, which no one can unlink from under its owner
// while it holds files. It returns ErrLocked when someone holds it.
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
