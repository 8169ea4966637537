package bigqueue

import "os"

// fileSystem is the seam between the queue and the file and sync calls of
// the operating system. Production queues use osFS, which calls the
// system directly; tests substitute fakes that fail the n-th call or
// record what a power loss would keep. None of these calls is on the
// enqueue or dequeue fast path.
type fileSystem interface {
	// create opens path read-write, creating or truncating it.
	create(path string) (*os.File, error)
	// open opens an existing path read-write.
	open(path string) (*os.File, error)
	// allocate reserves size bytes of blocks for f and extends it.
	allocate(f *os.File, size int64) error
	// mmap maps size bytes of f read-write and shared.
	mmap(f *os.File, size int) ([]byte, error)
	// syncFile fsyncs f.
	syncFile(f *os.File) error
	// syncMapping msyncs the mapping b of the file at path.
	syncMapping(path string, b []byte) error
	// syncDir fsyncs the directory dir.
	syncDir(dir string) error
	rename(from, to string) error
	remove(path string) error
}

// osFS is the fileSystem of production.
type osFS struct{}

func (osFS) create(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (osFS) open(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR, 0)
}

func (osFS) allocate(f *os.File, size int64) error     { return allocate(f, size) }
func (osFS) mmap(f *os.File, size int) ([]byte, error) { return mapFile(f, size) }
func (osFS) syncFile(f *os.File) error                 { return f.Sync() }
func (osFS) syncMapping(_ string, b []byte) error      { return syncMapping(b) }
func (osFS) syncDir(dir string) error                  { return syncDirectory(dir) }
func (osFS) rename(from, to string) error              { return os.Rename(from, to) }
func (osFS) remove(path string) error                  { return os.Remove(path) }

// Deliberately broken variants of the library, for showing that the
// power-loss simulator catches each kind of mistake. Only tests set
// broken, before opening a queue; production never does.
const (
	brokenNone            = iota
	brokenIndexBeforeData // Flush msyncs the index before the arenas
	brokenNoDirSync       // directory fsyncs are skipped
	brokenNoChecksum      // reads and recovery do not verify checksums
	brokenEarlyReclaim    // arenas are reclaimed by the read that passes them, before a flush made the consumer positions durable
)

var broken = brokenNone
