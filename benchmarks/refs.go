package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The physical references are not queues: they store message i in slot i
// of a plain buffer or file, to show what moving the same bytes costs
// with nothing else around it. Each is run in the same process and the
// same run as the libraries' workloads it is compared with.

// reference describes one physical reference for the README.
type reference struct {
	name string
	what string
}

var references = []reference{
	{"memcpy", "copy into (enqueue) or out of (dequeue) warm, already touched memory: a 64 MiB buffer used round-robin"},
	{"mmap-fresh", "enqueue: copy into a new sparse file of n×size bytes through a fresh `MAP_SHARED` mapping (every page is a first-write fault); dequeue: copy out through a fresh mapping of a file just written (pages in the page cache)"},
	{"mmap-rewrite", "copy into a file whose blocks were already written and fsynced, through a fresh mapping: what a queue that recycles its arenas pays; in alternate and steady, a ring of depth+1 slots in such a file"},
	{"write", "one `pwrite` (enqueue) or `pread` (dequeue) system call per message on a plain file, at consecutive offsets; in alternate and steady, a ring"},
	{"memqueue", "an in-memory queue: a slice and a mutex; runs every workload a library runs, except open"},
}

// warmBytes bounds the memcpy reference's buffer.
const warmBytes = 64 << 20

// store keeps fixed-size messages in numbered slots.
type store interface {
	put(slot int, msg []byte) error
	get(slot int, dst []byte) ([]byte, error)
	// settle makes what was put durable-ish and starts a new mapping, so
	// that the next accesses go through fresh page-table entries.
	settle() error
	close() error
}

type memStore struct {
	buf  []byte
	size int
}

func newMemStore(slots, size int) *memStore {
	s := &memStore{buf: make([]byte, slots*size), size: size}
	for i := range s.buf {
		s.buf[i] = 1 // touch every page
	}
	return s
}

func (s *memStore) put(slot int, msg []byte) error {
	copy(s.buf[slot*s.size:], msg)
	return nil
}

func (s *memStore) get(slot int, dst []byte) ([]byte, error) {
	return append(dst[:0], s.buf[slot*s.size:(slot+1)*s.size]...), nil
}

func (s *memStore) settle() error { return nil }
func (s *memStore) close() error  { return nil }

type mmapStore struct {
	f    *os.File
	b    []byte
	size int
}

// newMmapStore creates path with slots*size bytes, sparse, and maps it.
func newMmapStore(path string, slots, size int) (*mmapStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(int64(slots * size)); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	b, err := mapFile(f, slots*size)
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return &mmapStore{f: f, b: b, size: size}, nil
}

func (s *mmapStore) put(slot int, msg []byte) error {
	copy(s.b[slot*s.size:], msg)
	return nil
}

func (s *mmapStore) get(slot int, dst []byte) ([]byte, error) {
	return append(dst[:0], s.b[slot*s.size:(slot+1)*s.size]...), nil
}

// settle fsyncs the file (writing back the mapping's dirty pages and
// allocating their blocks) and maps it anew.
func (s *mmapStore) settle() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	size := len(s.b)
	if err := unmap(s.b); err != nil {
		return err
	}
	b, err := mapFile(s.f, size)
	if err != nil {
		return err
	}
	s.b = b
	return nil
}

func (s *mmapStore) close() error { return errors.Join(unmap(s.b), s.f.Close()) }

type fileStore struct {
	f    *os.File
	size int
}

func newFileStore(path string, size int) (*fileStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileStore{f: f, size: size}, nil
}

func (s *fileStore) put(slot int, msg []byte) error {
	_, err := s.f.WriteAt(msg, int64(slot)*int64(s.size))
	return err
}

func (s *fileStore) get(slot int, dst []byte) ([]byte, error) {
	dst = dst[:s.size]
	_, err := s.f.ReadAt(dst, int64(slot)*int64(s.size))
	return dst, err
}

func (s *fileStore) settle() error { return nil }
func (s *fileStore) close() error  { return s.f.Close() }

// runReference runs w on the physical reference ref in a fresh directory
// under tmp.
func runReference(ref string, w workload, tmp string) result {
	r := newResult(w, ref)
	switch w.kind {
	case kindPC, kindLatency, kindOpen:
		r.NA = "not a queue"
		return r
	}
	if ref == "mmap-fresh" && (w.kind == kindAlternate || w.kind == kindSteady) {
		r.NA = "a ring rewrites its own pages after the first lap: see mmap-rewrite"
		return r
	}
	if ref == "mmap-rewrite" && w.kind == kindDequeue {
		r.NA = "reading rewrites nothing: see mmap-fresh"
		return r
	}
	dir, err := os.MkdirTemp(tmp, "bq-bench-ref-")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil && r.Err == "" {
			r.Err = err.Error()
		}
	}()
	if err := runStore(ref, w, filepath.Join(dir, "data"), &r); err != nil {
		r.Err = err.Error()
	}
	return r
}

func runStore(ref string, w workload, path string, r *result) (err error) {
	slots := w.n
	switch {
	case w.kind == kindAlternate || w.kind == kindSteady:
		slots = w.depth + 1
	case ref == "memcpy":
		slots = min(w.n, max(1, warmBytes/w.msg))
	}
	var s store
	switch ref {
	case "memcpy":
		s = newMemStore(slots, w.msg)
	case "mmap-fresh", "mmap-rewrite":
		s, err = newMmapStore(path, slots, w.msg)
	case "write":
		s, err = newFileStore(path, w.msg)
	default:
		return fmt.Errorf("unknown reference %q", ref)
	}
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.close()) }()

	msg := payload(w.msg)
	buf := make([]byte, 0, w.msg)
	put := func(i int) error {
		stamp(msg, uint64(i%slots))
		return s.put(i%slots, msg)
	}
	get := func(i int) error {
		m, err := s.get(i%slots, buf)
		if err != nil {
			return err
		}
		return check(m, w.msg, uint64(i%slots))
	}
	// Every reference but a fresh file's enqueue starts from written slots.
	if !(ref == "mmap-fresh" && w.kind == kindEnqueue) {
		for i := range slots {
			if err := put(i); err != nil {
				return err
			}
		}
		if err := s.settle(); err != nil {
			return err
		}
	}
	bytes := int64(w.n) * int64(w.msg)
	switch w.kind {
	case kindEnqueue:
		t := startTimer()
		for i := range w.n {
			if err := put(i); err != nil {
				return err
			}
		}
		t.stop(r, w.n, bytes)
	case kindDequeue:
		t := startTimer()
		for i := range w.n {
			if err := get(i); err != nil {
				return err
			}
		}
		t.stop(r, w.n, bytes)
	case kindAlternate, kindSteady:
		t := startTimer()
		for i := range w.n {
			if err := put(w.depth + i); err != nil {
				return err
			}
			if err := get(i); err != nil {
				return err
			}
		}
		t.stop(r, w.n, bytes)
	}
	return nil
}
