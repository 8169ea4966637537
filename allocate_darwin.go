package bigqueue

import "os"

// fullAllocation is true: darwin has no fallocate that reserves a prefix
// of a file without writing it, so arena files are allocated in full when
// they are created.
const fullAllocation = true

// allocate reserves size bytes for f by writing zeros, since darwin has no
// fallocate. It is slower than on Linux but gives the same guarantee: a full
// disk fails here, not in a write through the mapping.
func allocate(f *os.File, size int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for off := st.Size(); off < size; off += int64(len(zeros)) {
		n := int64(len(zeros))
		if size-off < n {
			n = size - off
		}
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return nil
}
