"""Listing an S3 prefix, and batched existence checks that list instead of a HEAD per object.
Part of :class:`~orchestrator.store.s3.S3Store`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .base import StoreError
from .s3_requests import S3Requests


class S3Listing(S3Requests):
    """Expects ``list_page_size`` and ``list_threshold`` on the store."""

    list_page_size: int
    list_threshold: int

    def _sizes(self, keys: list[str], shard: Callable[[str, int], str]) -> dict[str, int]:
        """The size of each of ``keys`` that exists (absent keys are left out).

        Up to ``list_threshold`` keys: a HEAD each. Above: the keys are grouped by
        ``shard(key, 1)`` (16 prefixes: one hex character), each group listed. A prefix holding
        more than one page of objects is split into the shards ``shard(key, 2)`` (two hex
        characters; those already covered by the first page are settled from it), which are
        listed to the end, page by page. A group of a single key gets a HEAD instead. Groups
        run concurrently; the requests grow with the pages of the prefixes listed, not with the
        number of keys.
        """
        Group = tuple[int, list[str]]  # noqa: N806 - (depth, keys)
        out: dict[str, int] = {}

        def probe(item: Group) -> tuple[dict[str, int], list[Group]]:
            depth, group = item
            if len(group) == 1:
                head = self._head(group[0])
                return ({} if head is None else {group[0]: int(head.get("ContentLength", -1))}), []
            wanted = set(group)
            prefix = shard(group[0], depth)
            found: dict[str, int] = {}
            token: str | None = None
            while True:
                objs, token = self._list_page(prefix, token)
                found.update((o["Key"], int(o.get("Size", -1))) for o in objs if o["Key"] in wanted)
                if token is None:
                    return found, []
                if depth == 1:  # more than a page: split into the two-character shards
                    last = objs[-1]["Key"] if objs else prefix
                    subs: dict[str, list[str]] = {}
                    for k in group:
                        sub = shard(k, 2)
                        if not (last > sub and not last.startswith(sub)):  # not covered yet
                            subs.setdefault(sub, []).append(k)
                    return found, [(2, g) for g in subs.values()]

        if len(keys) <= self.list_threshold:
            todo: list[Group] = [(0, [k]) for k in keys]
        else:
            by_shard: dict[str, list[str]] = {}
            for k in keys:
                by_shard.setdefault(shard(k, 1), []).append(k)
            todo = [(1, g) for g in by_shard.values()]
        while todo:
            more: list[Group] = []
            for found, split in self._pool_map(probe, todo):
                out.update(found)
                more += split
            todo = more
        return out

    def _list_page(self, prefix: str, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``ListObjectsV2`` under ``prefix`` (retried): its objects and the token
        of the next page (``None`` on the last page)."""
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": self.list_page_size,
        }
        if token:
            kw["ContinuationToken"] = token
        page = self._run("ListObjectsV2", prefix, lambda: self._client.list_objects_v2(**kw))
        objs = page.get("Contents", []) or []
        if not page.get("IsTruncated"):
            return objs, None
        nxt = page.get("NextContinuationToken")
        if not nxt:
            raise StoreError(f"{self.url}: ListObjectsV2 {prefix} is truncated without a token")
        return objs, nxt

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (full key), page by page, each page retried."""
        token: str | None = None
        while True:
            objs, token = self._list_page(prefix, token)
            yield from objs
            if token is None:
                return

