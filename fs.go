package bigqueue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// fileSystem is the seam between the queue and the file and sync calls of
// the operating system. Production queues use osFS, which calls the
// system directly; tests substitute fakes that fail the n-th call or
// record what a power loss would keep. None of these calls is on the
// enqueue or dequeue fast path.
//
// Every name is a file name inside the queue directory d, resolved
// relative to d's descriptor, never through a path: a queue keeps using
// the directory it opened when its path is relative and the process
// changes its working directory, or when a symlink on the path is
// switched to another directory.
type fileSystem interface {
	// create creates name, which must not exist (O_EXCL), read-write.
	create(d *queueDir, name string) (*os.File, error)
	// open opens the existing name read-write.
	open(d *queueDir, name string) (*os.File, error)
	// allocate reserves blocks for the bytes [from, to) of f, keeping
	// what they hold, and extends f to to when it is shorter.
	allocate(f *os.File, from, to int64) error
	// mmap maps size bytes of f read-write and shared.
	mmap(f *os.File, size int) ([]byte, error)
	// syncFile fsyncs f.
	syncFile(f *os.File) error
	// syncMapping msyncs the mapping b of the file name.
	syncMapping(d *queueDir, name string, b []byte) error
	// syncDir fsyncs the directory d.
	syncDir(d *queueDir) error
	rename(d *queueDir, from, to string) error
	remove(d *queueDir, name string) error
}

// osFS is the fileSystem of production.
type osFS struct{}

func (osFS) create(d *queueDir, name string) (*os.File, error) { return d.create(name) }
func (osFS) open(d *queueDir, name string) (*os.File, error)   { return d.open(name) }
func (osFS) allocate(f *os.File, from, to int64) error         { return allocate(f, from, to) }
func (osFS) mmap(f *os.File, size int) ([]byte, error)         { return mapFile(f, size) }
func (osFS) syncFile(f *os.File) error                         { return f.Sync() }
func (osFS) syncMapping(_ *queueDir, _ string, b []byte) error { return syncMapping(b) }
func (osFS) syncDir(d *queueDir) error                         { return d.sync() }
func (osFS) rename(d *queueDir, from, to string) error         { return d.rename(from, to) }
func (osFS) remove(d *queueDir, name string) error             { return d.remove(name) }

// queueDir is a queue's directory, opened once by NewQueue and held until
// Close. Its descriptor carries the directory's lock (flock), and every
// file of the queue is created, opened, renamed, removed and listed
// relative to it (the *at system calls, in dir_unix.go).
type queueDir struct {
	f    *os.File // the directory, opened read-only
	path string   // the path NewQueue was given; for messages only
	// listed is the listing checkBeforeOpen took, with the lock held,
	// until names returns it: NewQueue's recovery (or Inspect) then lists
	// the directory once, not twice. Nothing between them changes the
	// directory but the index NewQueue may create, which no listing
	// reader looks for.
	listed []string
}

// openQueueDir opens the directory at path, which must exist.
func openQueueDir(path string) (*queueDir, error) {
	f, err := openDirectory(path)
	if err != nil {
		return nil, err
	}
	return &queueDir{f: f, path: path}, nil
}

// join names a file of the directory in messages.
func (d *queueDir) join(name string) string { return filepath.Join(d.path, name) }

// create creates name, read-write; it fails when name exists (O_EXCL), so
// that creating a file never truncates one another writer made.
func (d *queueDir) create(name string) (*os.File, error) {
	f, err := openAt(d.f, name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	noCOW(f)
	return f, nil
}

// open opens the existing name read-write.
func (d *queueDir) open(name string) (*os.File, error) {
	return openAt(d.f, name, os.O_RDWR, 0)
}

// openRead opens the existing name read-only. O_NONBLOCK keeps a FIFO
// planted under the name from blocking the open until a writer comes;
// it changes nothing for a regular file.
func (d *queueDir) openRead(name string) (*os.File, error) {
	return openAt(d.f, name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

func (d *queueDir) rename(from, to string) error       { return renameAt(d.f, from, to) }
func (d *queueDir) remove(name string) error           { return unlinkAt(d.f, name) }
func (d *queueDir) stat(name string) (fileStat, error) { return statAt(d.f, name) }
func (d *queueDir) lock() error                        { return lockDir(d.f) }

// names lists the directory: the listing checkBeforeOpen kept, the
// first time after it, else a new one.
func (d *queueDir) names() ([]string, error) {
	if names := d.listed; names != nil {
		d.listed = nil
		return names, nil
	}
	return listAt(d.f)
}

// sync fsyncs the directory, so that the files created, renamed or
// removed in it survive a power loss.
func (d *queueDir) sync() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", d.path, err)
	}
	return nil
}

// close releases the lock, when held, and the descriptor.
func (d *queueDir) close() error {
	return errors.Join(unlockDir(d.f), d.f.Close())
}

// makeDir creates the directory path and its missing parents, and fsyncs
// the parent of each directory it created, so that a queue made in a new
// directory is not lost with that directory's entry at a power loss.
func makeDir(path string) error {
	var made []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			break
		}
		made = append(made, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if len(made) == 0 {
		return nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	for _, p := range made {
		if err := syncDirectory(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// rewrite reads the bytes [from, to) of f and writes them back, which
// reserves their blocks where there is no fallocate, without changing
// them: the range may hold records already (a holey page below the
// reserved range, after a reopen), and bytes past the end of the file
// read as zeros.
func rewrite(f *os.File, from, to int64) error {
	buf := make([]byte, min(to-from, 64<<10))
	for off := from; off < to; {
		chunk := buf[:min(int64(len(buf)), to-off)]
		n, err := f.ReadAt(chunk, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		clear(chunk[n:])
		if _, err := f.WriteAt(chunk, off); err != nil {
			return err
		}
		off += int64(len(chunk))
	}
	return nil
}
