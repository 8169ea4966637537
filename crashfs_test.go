package bigqueue

// crashFS, the file system of the power-loss simulator (powerloss_test.go):
// it passes every call to osFS and records, in snapshots, what a power
// loss could leave of a queue directory.

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// ---------------------------------------------------------------------
// The model of the disk.

type plDirOpKind uint8

const (
	plCreate plDirOpKind = iota
	plRename
	plRemove
)

// plDirOp is one change of the directory: names are base names. Each
// acts on one file, fid, wherever that file's name is in the image: so
// that the operations since the last directory fsync can survive in any
// subset, a rename or remove whose earlier create (or rename) was lost
// still finds its file.
type plDirOp struct {
	kind     plDirOpKind
	name, to string // to: the new name of a rename
	fid      int    // the file created, renamed or removed
}

// apply changes list, a directory (name → file id), by op. A remove takes
// the file's entry away, wherever it is; a rename puts the file under its
// new name and nowhere else; a create or rename replaces what its target
// name held (a file whose own remove did not survive loses its name here).
func (op plDirOp) apply(list map[string]int) {
	if op.kind != plCreate {
		maps.DeleteFunc(list, func(_ string, fid int) bool { return fid == op.fid })
	}
	switch op.kind {
	case plCreate:
		list[op.name] = op.fid
	case plRename:
		list[op.to] = op.fid
	}
}

func (op plDirOp) String() string {
	switch op.kind {
	case plCreate:
		return "create " + op.name
	case plRename:
		return "rename " + op.name + " " + op.to
	}
	return "remove " + op.name
}

// plSnapshot is the state of the disk at one crash point. Every field is
// read-only once taken; byte slices are shared between snapshots.
type plSnapshot struct {
	label   string
	opIndex int            // workload op being run: -1 while opening, len(ops) from the end on
	durList map[string]int // the durable directory: name → file id
	pending []plDirOp      // directory operations since the last directory fsync
	cur     map[int][]byte // file id → content now, for every file some listing of the snapshot names
	dur     map[int][]byte // file id → durable content; absent: never synced
	durAt   map[int]int    // file id → index of the snapshot taken just before its last sync
	isIndex map[int]bool   // files that are or were named index.bq*: no garbage pages
	model   plModel
}

// plDirSet says which pending directory operations survived a power loss:
// operation i did when i < len(set) and set[i]. nil: none.
type plDirSet []bool

// plAllDirs returns the set of all n operations.
func plAllDirs(n int) plDirSet {
	set := make(plDirSet, n)
	for i := range set {
		set[i] = true
	}
	return set
}

func (set plDirSet) has(i int) bool { return i < len(set) && set[i] }

// listing returns the durable directory with the pending operations of
// set applied, in their order.
func (s *plSnapshot) listing(set plDirSet) map[string]int {
	list := maps.Clone(s.durList)
	for i, op := range s.pending {
		if set.has(i) {
			op.apply(list)
		}
	}
	return list
}

// crashFS is a fileSystem that passes every call to osFS and records, in
// snapshots, what a power loss could leave of the queue directory dir.
// It serves one workload at a time.
type crashFS struct {
	mu  sync.Mutex
	dir string

	fids     map[uint64]int   // inode of a live file → file id; a removed inode is forgotten, so reuse gets a new id
	nextFid  int              // last file id given out
	ops      []plDirOp        // every create, rename and remove, in order; append-only
	durList  map[string]int   // the directory as of the last directory fsync; replaced, never modified
	durOps   int              // ops[:durOps] are in durList
	dur      map[int][]byte   // file id → durable content; values never modified
	durAt    map[int]int      // file id → snapshot taken just before its last sync
	unlinked map[int][]byte   // content of a removed or replaced file, read just before
	last     map[int][]byte   // content of each file at the previous snapshot, to share unchanged bytes
	snaps    []*plSnapshot    // every snapshot, in order
	opIndex  int              // the workload op running, for labels
	phase    string           // what the workload is doing, for labels
	model    *plModel         // the workload's knowledge, copied into each snapshot
	isIndex  map[int]bool     // file ids ever named index.bq*
	err      error            // the first inconsistency between this model and the real directory
	observed map[string]int64 // calls by kind, for the summary
}

func newCrashFS(dir string, model *plModel) *crashFS {
	return &crashFS{
		dir:      dir,
		fids:     make(map[uint64]int),
		durList:  make(map[string]int),
		dur:      make(map[int][]byte),
		durAt:    make(map[int]int),
		unlinked: make(map[int][]byte),
		last:     make(map[int][]byte),
		isIndex:  make(map[int]bool),
		model:    model,
		opIndex:  -1,
		phase:    "open",
		observed: make(map[string]int64),
	}
}

// setPhase names what the workload does next.
func (c *crashFS) setPhase(opIndex int, phase string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opIndex, c.phase = opIndex, phase
}

// fail records the first inconsistency; the workload reports it.
func (c *crashFS) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("crashFS: "+format, args...)
	}
}

func plInode(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Ino), true
}

// fidOf returns the file id of the file at path. Needs mu.
func (c *crashFS) fidOf(path string) (int, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	ino, ok := plInode(fi)
	if !ok {
		return 0, false
	}
	fid, ok := c.fids[ino]
	return fid, ok
}

func (c *crashFS) noteName(name string, fid int) {
	if strings.HasPrefix(name, indexFileName) {
		c.isIndex[fid] = true
	}
}

func (c *crashFS) create(d *queueDir, name string) (*os.File, error) {
	path := d.join(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["create"]++
	_, statErr := os.Stat(path)
	f, err := osFS{}.create(d, name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	ino, ok := plInode(fi)
	if !ok {
		c.fail("no inode for %s", path)
		return f, nil
	}
	if statErr == nil {
		// O_TRUNC of an existing file: same inode, new content.
		if _, known := c.fids[ino]; !known {
			c.fail("create truncated %s, which the model does not know", path)
		}
		return f, nil
	}
	c.nextFid++
	c.fids[ino] = c.nextFid
	c.noteName(name, c.nextFid)
	c.ops = append(c.ops, plDirOp{kind: plCreate, name: name, fid: c.nextFid})
	return f, nil
}

func (c *crashFS) open(d *queueDir, name string) (*os.File, error) { return osFS{}.open(d, name) }

func (c *crashFS) allocate(f *os.File, from, to int64) error { return osFS{}.allocate(f, from, to) }

func (c *crashFS) mmap(f *os.File, size int) ([]byte, error) { return osFS{}.mmap(f, size) }

func (c *crashFS) syncFile(f *os.File) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["fsync"]++
	c.snapshot("fsync " + filepath.Base(f.Name()))
	if err := (osFS{}).syncFile(f); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		c.fail("stat %s: %v", f.Name(), err)
		return nil
	}
	ino, _ := plInode(fi)
	fid, ok := c.fids[ino]
	if !ok {
		c.fail("fsync of unknown file %s", f.Name())
		return nil
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		c.fail("read %s: %v", f.Name(), err)
		return nil
	}
	c.dur[fid] = b
	c.durAt[fid] = len(c.snaps) - 1
	return nil
}

func (c *crashFS) syncMapping(d *queueDir, name string, b []byte) error {
	path := d.join(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["msync"]++
	c.snapshot("msync " + filepath.Base(path))
	if err := (osFS{}).syncMapping(d, name, b); err != nil {
		return err
	}
	fid, ok := c.fidOf(path)
	if !ok {
		c.fail("msync of unknown file %s", path)
		return nil
	}
	now, err := os.ReadFile(path)
	if err != nil {
		c.fail("read %s: %v", path, err)
		return nil
	}
	if len(b) < len(now) {
		// Only the mapped range became durable; the rest stays as it was.
		old := plPad(c.dur[fid], len(b), len(now))
		copy(now[len(b):], old)
	}
	c.dur[fid] = now
	c.durAt[fid] = len(c.snaps) - 1
	return nil
}

func (c *crashFS) syncDir(d *queueDir) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["syncdir"]++
	c.snapshot("fsync directory")
	if err := (osFS{}).syncDir(d); err != nil {
		return err
	}
	list := maps.Clone(c.durList)
	for _, op := range c.ops[c.durOps:] {
		op.apply(list)
	}
	c.durList, c.durOps = list, len(c.ops)
	return nil
}

func (c *crashFS) rename(d *queueDir, fromName, toName string) error {
	from, to := d.join(fromName), d.join(toName)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["rename"]++
	fid, ok := c.fidOf(from)
	if !ok {
		c.fail("rename of unknown file %s", from)
	}
	var replaced []byte
	var replacedIno uint64
	fi, statErr := os.Stat(to)
	if statErr == nil {
		replacedIno, _ = plInode(fi)
		var err error
		if replaced, err = os.ReadFile(to); err != nil {
			c.fail("read %s: %v", to, err)
		}
	}
	if err := (osFS{}).rename(d, fromName, toName); err != nil {
		return err
	}
	if statErr == nil {
		if rfid, ok := c.fids[replacedIno]; ok {
			c.unlinked[rfid] = replaced
			delete(c.fids, replacedIno)
		}
	}
	c.noteName(filepath.Base(to), fid)
	c.ops = append(c.ops, plDirOp{kind: plRename, name: filepath.Base(from), to: filepath.Base(to), fid: fid})
	return nil
}

func (c *crashFS) remove(d *queueDir, name string) error {
	path := d.join(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed["remove"]++
	fi, statErr := os.Stat(path)
	var content []byte
	if statErr == nil {
		var err error
		if content, err = os.ReadFile(path); err != nil {
			c.fail("read %s: %v", path, err)
		}
	}
	if err := (osFS{}).remove(d, name); err != nil {
		return err
	}
	fid := 0
	if statErr == nil {
		ino, _ := plInode(fi)
		var ok bool
		if fid, ok = c.fids[ino]; ok {
			c.unlinked[fid] = content
			delete(c.fids, ino)
		} else {
			c.fail("remove of unknown file %s", path)
		}
	}
	c.ops = append(c.ops, plDirOp{kind: plRemove, name: filepath.Base(path), fid: fid})
	return nil
}

// snapshot records a crash point labelled what. Needs mu.
func (c *crashFS) snapshot(what string) {
	s := &plSnapshot{
		label:   fmt.Sprintf("%s: %s", c.phase, what),
		opIndex: c.opIndex,
		durList: c.durList,
		pending: c.ops[c.durOps:len(c.ops):len(c.ops)],
		cur:     make(map[int][]byte),
		dur:     maps.Clone(c.dur),
		durAt:   maps.Clone(c.durAt),
		isIndex: c.isIndex,
		model:   c.model.clone(),
	}
	c.isIndex = maps.Clone(c.isIndex)

	// The files any listing names, and the live ones by current name.
	now := maps.Clone(c.durList)
	refs := make(map[int]bool)
	for _, fid := range now {
		refs[fid] = true
	}
	for _, op := range s.pending {
		op.apply(now)
		if op.kind == plCreate {
			refs[op.fid] = true
		}
	}
	live := make(map[int]string, len(now))
	for name, fid := range now {
		live[fid] = name
	}

	// The model's directory must be the real one.
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		c.fail("list %s: %v", c.dir, err)
		return
	}
	seen := 0
	for _, e := range entries {
		if e.Name() == legacyLockFileName {
			continue
		}
		seen++
		fid, ok := c.fidOf(filepath.Join(c.dir, e.Name()))
		if !ok || now[e.Name()] != fid {
			c.fail("%s: directory has %s (file %d), model has file %d", s.label, e.Name(), fid, now[e.Name()])
		}
	}
	if seen != len(now) {
		c.fail("%s: directory has %d files, model %d", s.label, seen, len(now))
	}

	for fid := range refs {
		var b []byte
		if name, ok := live[fid]; ok {
			if b, err = os.ReadFile(filepath.Join(c.dir, name)); err != nil {
				c.fail("read %s: %v", name, err)
			}
		} else if b, ok = c.unlinked[fid]; !ok {
			c.fail("%s: no content for file %d", s.label, fid)
		}
		if prev, ok := c.last[fid]; ok && bytes.Equal(prev, b) {
			b = prev
		}
		c.last[fid] = b
		s.cur[fid] = b
	}
	c.snaps = append(c.snaps, s)
}
