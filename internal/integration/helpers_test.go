package integration

import "github.com/salamander-chat/salamander/client"

func clientHistory(before, after uint64, limit int) client.HistoryQuery {
	return client.HistoryQuery{Before: before, After: after, Limit: limit}
}
