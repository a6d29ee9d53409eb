package gateway

import "sort"

// userSet is a set of user names in buckets by name hash, with the size
// and an order-independent hash (XOR of the members' hashes) of each
// bucket and of the whole, so that two processes compare sets by a few
// bytes and repair only the buckets that differ. Adding and removing are
// O(1).
type userSet struct {
	buckets [presenceBuckets]map[string]struct{}
	sums    [presenceBuckets]uint64
	n       int
	sum     uint64
	bytes   int // total length of the names
}

func newUserSet() *userSet { return &userSet{} }

func (s *userSet) add(u string) bool {
	h := userHash(u)
	b := bucketOf(h)
	m := s.buckets[b]
	if m == nil {
		m = map[string]struct{}{}
		s.buckets[b] = m
	} else if _, ok := m[u]; ok {
		return false
	}
	m[u] = struct{}{}
	s.sums[b] ^= h
	s.sum ^= h
	s.n++
	s.bytes += len(u)
	return true
}

func (s *userSet) remove(u string) bool {
	h := userHash(u)
	b := bucketOf(h)
	m := s.buckets[b]
	if _, ok := m[u]; !ok {
		return false
	}
	delete(m, u)
	if len(m) == 0 {
		s.buckets[b] = nil
	}
	s.sums[b] ^= h
	s.sum ^= h
	s.n--
	s.bytes -= len(u)
	return true
}

func (s *userSet) has(u string) bool {
	_, ok := s.buckets[bucketOf(userHash(u))][u]
	return ok
}

func (s *userSet) all() []string {
	out := make([]string, 0, s.n)
	for _, m := range s.buckets {
		for u := range m {
			out = append(out, u)
		}
	}
	return out
}

// syncPartOverhead is a generous bound on a part's JSON besides its names;
// each name costs its length plus 3 (quotes and comma).
const syncPartOverhead = 32

// list returns the users of buckets, the first of them after the name
// after, in parts totalling at most budget bytes. It stops before a bucket
// that does not fit, unless that bucket is the first, in which case it
// cuts it in name order and returns the last name given as next. done is
// how many buckets were given whole.
func (s *userSet) list(buckets []int, after string, budget int) (parts []syncPart, done int, next string) {
	size := 0
	for i, b := range buckets {
		names := make([]string, 0, len(s.buckets[b]))
		for u := range s.buckets[b] {
			names = append(names, u)
		}
		if i == 0 && after != "" {
			sort.Strings(names)
			names = names[sort.SearchStrings(names, after+"\x00"):]
		}
		need := syncPartOverhead
		for _, u := range names {
			need += len(u) + 3
		}
		if size+need <= budget {
			if len(names) > 0 {
				parts = append(parts, syncPart{Bucket: b, Users: names})
			}
			size += need
			continue
		}
		if i > 0 {
			return parts, i, "" // the next reply starts with this bucket
		}
		// One bucket larger than a reply: cut it in name order.
		if after == "" {
			sort.Strings(names)
		}
		take, size := 0, syncPartOverhead
		for take < len(names) && size+len(names[take])+3 <= budget {
			size += len(names[take]) + 3
			take++
		}
		return []syncPart{{Bucket: b, Users: names[:take]}}, 0, names[take-1]
	}
	return parts, len(buckets), ""
}

// userHash is FNV-1a with a final mix, the same in every process.
func userHash(u string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(u); i++ {
		h ^= uint64(u[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func bucketOf(h uint64) int { return int(h >> (64 - presenceBucketBits)) }
