//! glibc malloc settings for long streaming runs (no-ops on other platforms).

/// Hands memory freed by one phase (spread over the worker threads' malloc arenas) back to
/// the system, so the next phase does not stack on top of it in peak RSS.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps large allocations on mmap. glibc raises its mmap threshold after the first large
/// free, and then serves a stream's per-batch buffers from heaps that fragment, so peak RSS
/// creeps up with the input size (measured pretokenizing: 160 MB for 100 MB of text, 196 MB
/// for 1 GB). Setting the threshold to glibc's own default turns that adjustment off.
pub fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Asks the CPU to bring the cache line at `p` into its caches, so that a miss overlaps
/// other work; any address (null too) is safe, and nothing is read.
#[inline]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for plain data whose every field is valid when zero.
pub(crate) unsafe trait Zeroable: Copy {}

/// A 2 MB huge page, the unit transparent huge pages come in on x86-64 Linux.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_PAGE: usize = 2 << 20;

/// A boxed slice that starts zeroed: from 2 MB up, on Linux, a mapping of its own, aligned
/// to 2 MB and advised for transparent huge pages before it is first touched.
///
/// The lookup tables of encoding are megabytes probed at random. On 4 KB pages nearly every
/// probe of a table that is not in the CPU's caches also misses the TLB and walks the page
/// table; on 2 MB pages the whole table takes a few TLB entries. Taken from malloc, the
/// memory could be pages the process already touched, which the advice cannot change.
/// Where the kernel declines (THP off), these are ordinary pages.
pub(crate) struct ZeroedSlice<T: Zeroable> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: it owns its elements like a Box<[T]>.
unsafe impl<T: Zeroable + Send> Send for ZeroedSlice<T> {}
// SAFETY: shared access only gives out &[T].
unsafe impl<T: Zeroable + Sync> Sync for ZeroedSlice<T> {}

impl<T: Zeroable> ZeroedSlice<T> {
    pub(crate) fn new(len: usize) -> Self {
        let layout = Self::layout(len);
        if layout.size() == 0 {
            let ptr = std::ptr::NonNull::dangling();
            return ZeroedSlice { ptr, len };
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if Self::maps(layout) {
            // A fresh anonymous mapping reads as zeros.
            return match map_huge(layout.size()) {
                Some(ptr) => ZeroedSlice { ptr: ptr.cast(), len },
                None => std::alloc::handle_alloc_error(layout),
            };
        }
        // SAFETY: the layout's size is not zero.
        match std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }) {
            Some(ptr) => ZeroedSlice { ptr: ptr.cast(), len },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    /// Cache-line aligned, so that slots of a power-of-two size never straddle two lines.
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::array::<T>(len)
            .and_then(|layout| layout.align_to(64))
            .expect("table size overflows")
    }

    /// Whether a slice of this layout is a mapping of its own (else from the global
    /// allocator): the layout, the same when it is freed, decides.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn maps(layout: std::alloc::Layout) -> bool {
        layout.size() >= HUGE_PAGE
    }
}

/// A fresh anonymous mapping of `size` bytes rounded up to huge pages, aligned to 2 MB,
/// advised for huge pages; `None` if the system refuses the mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn map_huge(size: usize) -> Option<std::ptr::NonNull<u8>> {
    let size = size.next_multiple_of(HUGE_PAGE);
    // SAFETY: a private anonymous mapping touches no existing memory; the excess around the
    // aligned part is unmapped, and the advice only concerns the mapping made here.
    unsafe {
        let raw = libc::mmap(
            std::ptr::null_mut(),
            size + HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE);
        if aligned > start {
            libc::munmap(raw, aligned - start);
        }
        let end = start + size + HUGE_PAGE;
        if end > aligned + size {
            libc::munmap((aligned + size) as *mut libc::c_void, end - aligned - size);
        }
        libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        std::ptr::NonNull::new(aligned as *mut u8)
    }
}

impl<T: Zeroable> std::ops::Deref for ZeroedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialized (zeroed, then written) elements.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> std::ops::DerefMut for ZeroedSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for Deref, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for ZeroedSlice<T> {
    fn drop(&mut self) {
        let layout = Self::layout(self.len);
        if layout.size() == 0 {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if Self::maps(layout) {
            // SAFETY: a mapping from `map_huge` of this size rounded up to huge pages.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), layout.size().next_multiple_of(HUGE_PAGE)) };
            return;
        }
        // SAFETY: allocated in `new` by the global allocator with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct Pair(u64, u64);
    // SAFETY: two integers.
    unsafe impl Zeroable for Pair {}

    #[test]
    fn zeroed_slices_small_and_huge() {
        for len in [0, 1, 1000, (5 << 20) / 16] {
            let mut slice = ZeroedSlice::<Pair>::new(len);
            assert_eq!(slice.len(), len);
            assert!(slice.iter().all(|p| p.0 == 0 && p.1 == 0));
            for (i, p) in slice.iter_mut().enumerate() {
                *p = Pair(i as u64, !(i as u64));
            }
            assert!(slice
                .iter()
                .enumerate()
                .all(|(i, p)| p.0 == i as u64 && p.1 == !(i as u64)));
            if len > 0 {
                assert_eq!(slice.as_ptr() as usize % 64, 0, "cache-line aligned");
            }
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            if len * 16 >= HUGE_PAGE {
                assert!(
                    ZeroedSlice::<Pair>::maps(ZeroedSlice::<Pair>::layout(len)),
                    "a mapping of its own"
                );
                assert_eq!(slice.as_ptr() as usize % HUGE_PAGE, 0, "aligned to a huge page");
            }
        }
    }
}
