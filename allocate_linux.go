package bigqueue

import (
	"os"

	"golang.org/x/sys/unix"
)

// fullAllocation is false where allocate can reserve a prefix of a file
// without touching its size: arena files are then reserved in steps.
const fullAllocation = false

// allocate reserves disk blocks for the bytes [from, to) of f, extending
// it to to when it is shorter, so that writes through a mapping into that
// range can never fail with SIGBUS for lack of space: a full disk shows up
// here as ENOSPC instead. What the range holds is kept. Where the file
// system has no fallocate (ext2, ext3 without extents, ramfs), the range
// is read and written back, which reserves it all the same.
func allocate(f *os.File, from, to int64) error {
	if to <= from {
		return nil
	}
	for {
		err := unix.Fallocate(int(f.Fd()), 0, from, to-from)
		switch err {
		case unix.EINTR:
			continue
		case unix.EOPNOTSUPP:
			return rewrite(f, from, to)
		case nil:
			return nil
		}
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
}

// fsNoCOW is FS_NOCOW_FL of linux/fs.h.
const fsNoCOW = 0x00800000

// noCOW asks the file system not to copy f's blocks on write, so that the
// blocks allocate reserves are the ones later writes use. It matters on
// btrfs, where a rewrite of a copy-on-write page needs a new block: on a
// full disk the write through the mapping would then fault although the
// range was reserved. The flag takes effect only on an empty file, so it
// is set right after the file is created. It is advisory: file systems
// without it (ext4, XFS, tmpfs) refuse it, and that refusal is not an
// error, since they rewrite in place anyway. (btrfs snapshots of the
// queue's subvolume make the files copy-on-write again; see the package
// documentation.)
func noCOW(f *os.File) {
	fd := int(f.Fd())
	flags, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsNoCOW != 0 {
		return
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, flags|fsNoCOW); err != nil {
		return // advisory, as above
	}
}

// prefault populates the pages of b, a shared mapping, writable, as a
// write to each would (MADV_POPULATE_WRITE, Linux 5.14), without changing
// a byte. Where a write would fault (SIGBUS) it returns an error instead.
func prefault(b []byte) error {
	return unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}
