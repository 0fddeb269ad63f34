package suite

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
)

// cpioNames lists the file names in a newc cpio archive (the initramfs
// guest-images/build-initramfs.sh writes), e.g. "bin/blackscholes". It
// reads headers only and seeks past file data.
func cpioNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cpio: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	names := map[string]bool{}
	// newc: a 110-byte ASCII header ("070701", then 13 8-digit hex
	// fields; namesize is the 12th at offset 94, filesize the 7th at
	// offset 54), the NUL-terminated name, padding to 4 bytes, the data,
	// padding to 4 bytes (the kernel's Documentation/driver-api/
	// early-userspace/buffer-format.rst).
	const hdrLen = 110
	var off int64
	hdr := make([]byte, hdrLen)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("cpio %s: header at %d: %w", path, off, err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("cpio %s: no newc magic at offset %d", path, off)
		}
		fileSize, err1 := strconv.ParseUint(string(hdr[54:62]), 16, 32)
		nameSize, err2 := strconv.ParseUint(string(hdr[94:102]), 16, 32)
		if err1 != nil || err2 != nil || nameSize == 0 {
			return nil, fmt.Errorf("cpio %s: bad header at offset %d", path, off)
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, fmt.Errorf("cpio %s: name at %d: %w", path, off, err)
		}
		n := string(name[:nameSize-1])
		if n == "TRAILER!!!" {
			return names, nil
		}
		names[n] = true
		off += hdrLen + int64(nameSize)
		skip := pad4(off) + int64(fileSize)
		off += skip
		skip += pad4(off)
		off = off + pad4(off)
		if _, err := r.Discard(int(skip)); err != nil {
			return nil, fmt.Errorf("cpio %s: data of %s: %w", path, n, err)
		}
	}
}

// pad4 is how many bytes take off to a multiple of 4.
func pad4(off int64) int64 { return (4 - off%4) % 4 }
