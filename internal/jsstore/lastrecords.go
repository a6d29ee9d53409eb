package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/salamander-chat/salamander"
)

// LastRecords returns the newest record of every key of stream that
// starts with prefix ("drill."), by key, as the stream's leader has them:
// for a tool without a read model (the admin CLI) that must see, say,
// every drill before it starts another. It asks for the stream's subjects
// under the prefix, a page at a time, then for each one's last record.
func (s *Store) LastRecords(ctx context.Context, stream, prefix string) (map[string]salamander.Record, error) {
	root := subjectRoot(stream) + "."
	var subjects []string
	for offset := 0; ; {
		req, _ := json.Marshal(map[string]any{"subjects_filter": root + prefix + ">", "offset": offset})
		data, err := s.apiRequest(ctx, "$JS.API.STREAM.INFO."+natsName(stream), req, true, nil)
		if err != nil {
			return nil, err
		}
		var res struct {
			State struct {
				Subjects map[string]uint64 `json:"subjects"`
			} `json:"state"`
			Total  int       `json:"total"`
			Limit  int       `json:"limit"`
			Offset int       `json:"offset"`
			Error  *apiError `json:"error"`
		}
		if err := json.Unmarshal(data, &res); err != nil {
			return nil, fmt.Errorf("subjects of %s: %w", stream, err)
		}
		if res.Error != nil {
			return nil, res.Error
		}
		for subj := range res.State.Subjects {
			subjects = append(subjects, subj)
		}
		offset += len(res.State.Subjects)
		if len(res.State.Subjects) == 0 || offset >= res.Total {
			break
		}
	}
	slices.Sort(subjects)
	out := make(map[string]salamander.Record, len(subjects))
	for _, subj := range subjects {
		key := strings.TrimPrefix(subj, root)
		_, rec, found, err := s.LastRecord(ctx, stream, key)
		if err != nil {
			return nil, err
		}
		if found {
			out[key] = rec
		}
	}
	return out, nil
}
