package bigqueue

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// withPlant switches on deliberately broken variants of the queue (plant,
// options.go).
func withPlant(p plant) Option {
	return func(o *options) error {
		o.plant = p
		return nil
	}
}

// withReadyMin makes a queue prepare its next arena ahead (ready.go) for
// arenas of n bytes and more, so that tests with small arenas take that
// path too.
func withReadyMin(n int) Option {
	return func(o *options) error {
		o.readyMin = n
		return nil
	}
}

// withFS makes a queue use fs for its file and sync calls.
func withFS(fs fileSystem) Option {
	return func(o *options) error {
		o.fs = fs
		return nil
	}
}

// fsCall names the kinds of calls faultFS counts and can fail.
type fsCall string

const (
	callCreate   fsCall = "create"
	callOpen     fsCall = "open"
	callAllocate fsCall = "allocate"
	callMmap     fsCall = "mmap"
	callSyncFile fsCall = "fsync"
	callMsync    fsCall = "msync"
	callSyncDir  fsCall = "syncdir"
	callRename   fsCall = "rename"
	callRemove   fsCall = "remove"
)

// faultFS passes every call to osFS, counting calls by kind, and fails
// the calls a test asks it to: the n-th call of a kind, once or from then
// on (persistently), with err.
type faultFS struct {
	mu         sync.Mutex
	calls      map[fsCall]int
	failKind   fsCall
	failAt     int  // 1-based call number of failKind to fail; 0 = never
	persistent bool // fail every later call of failKind too
	err        error
	failed     int // calls failed so far
}

func newFaultFS() *faultFS {
	return &faultFS{calls: make(map[fsCall]int), err: syscall.EIO}
}

// failNth makes the n-th call of kind (counted from now on) fail with err,
// and every later one too when persistent.
func (f *faultFS) failNth(kind fsCall, n int, persistent bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = make(map[fsCall]int)
	f.failKind, f.failAt, f.persistent, f.err = kind, n, persistent, err
}

// count returns how many calls of kind were made since the last failNth
// (or since newFaultFS).
func (f *faultFS) count(kind fsCall) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[kind]
}

// heal stops injecting failures.
func (f *faultFS) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt = 0
}

// check counts a call of kind and returns the injected error, if any.
func (f *faultFS) check(kind fsCall, subject string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[kind]++
	n := f.calls[kind]
	if f.failAt > 0 && kind == f.failKind && (n == f.failAt || (f.persistent && n > f.failAt)) {
		f.failed++
		return fmt.Errorf("injected %s failure #%d on %s: %w", kind, n, subject, f.err)
	}
	return nil
}

func (f *faultFS) create(d *queueDir, name string) (*os.File, error) {
	if err := f.check(callCreate, d.join(name)); err != nil {
		return nil, err
	}
	return osFS{}.create(d, name)
}

func (f *faultFS) open(d *queueDir, name string) (*os.File, error) {
	if err := f.check(callOpen, d.join(name)); err != nil {
		return nil, err
	}
	return osFS{}.open(d, name)
}

func (f *faultFS) allocate(file *os.File, from, to int64) error {
	if err := f.check(callAllocate, file.Name()); err != nil {
		return err
	}
	return osFS{}.allocate(file, from, to)
}

func (f *faultFS) mmap(file *os.File, size int) ([]byte, error) {
	if err := f.check(callMmap, file.Name()); err != nil {
		return nil, err
	}
	return osFS{}.mmap(file, size)
}

func (f *faultFS) syncFile(file *os.File) error {
	if err := f.check(callSyncFile, file.Name()); err != nil {
		return err
	}
	return osFS{}.syncFile(file)
}

func (f *faultFS) syncMapping(d *queueDir, name string, b []byte) error {
	if err := f.check(callMsync, d.join(name)); err != nil {
		return err
	}
	return osFS{}.syncMapping(d, name, b)
}

func (f *faultFS) syncDir(d *queueDir) error {
	if err := f.check(callSyncDir, d.path); err != nil {
		return err
	}
	return osFS{}.syncDir(d)
}

func (f *faultFS) rename(d *queueDir, from, to string) error {
	if err := f.check(callRename, d.join(from)); err != nil {
		return err
	}
	return osFS{}.rename(d, from, to)
}

func (f *faultFS) remove(d *queueDir, name string) error {
	if err := f.check(callRemove, d.join(name)); err != nil {
		return err
	}
	return osFS{}.remove(d, name)
}
