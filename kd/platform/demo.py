"""A realistic demo exam site for the platform simulator, drills and tests.

``make_site(...)`` returns the site in the shape of the package manifest (docs/formats.md
§2.2, without ``publish_time``, ``lock`` and ``members``, which the simulator adds)::

    {"site_code": "11003", "site_name": "...", "exam_name": "...",
     "rooms": [{"code": "11003001", "name": "第1考场", "seats": 40}, ...],
     "subjects": [{"code": "0101", "name": "电工（四级）理论知识"}, ...],
     "sessions": [{"id": "1", "name": "第一场次", "start": "2026-11-26T09:00:00+08:00",
                   "duration_min": 90, "subjects": ["0101"]}, ...],
     "candidates": [{"ticket": "...", "name": "张伟", "id_card": "...", "room": "11003001",
                     "seat": 1, "session": "1", "subject": "0101"}, ...]}

``DRILL_DAY`` is the drill mode's demo day (the app's drill platform when no other site
is asked for: ``kd.site.open_site``): the 30 rooms and two sessions of ``make_site``'s
defaults, but the first session starting ``first_start_in`` (20) minutes after the
platform is first set up, each lasting ``duration`` (10) minutes, ``gap`` (5) minutes
apart. So every session starts within the hour after any 机考锁校时 done before the
first one, and 授权验证 of the second session passes with the first sync, while the
rule itself (a sync within the hour before the start, ``kd.formats.documents.SYNC_WINDOW``)
is the same as outside drill mode; the simulated proctors of the GUI drill start each
session at its 开考时间 and end it at its scheduled end (``kd.lan.simulator``, ``on_schedule``),
so the whole day is rehearsed in about 45 minutes.

Names, tickets and subjects are drawn from a ``random.Random`` seeded with the site code,
so the same arguments always give the same site. ``room_file(site, room_code, size)``
makes the room data file for the proctor machine (``kd-room-data/1``, docs/formats.md §2.7;
the site hands it out unread): UTF-8 JSON with the sessions, the room's candidates (the
roster a result package must match) and a pseudo-random ``paper`` blob that brings it to
about ``size`` bytes.
"""

import base64
import datetime
import json
import random
from typing import Any, Dict, List, Optional

CHINA = datetime.timezone(datetime.timedelta(hours=8), "CST")

SESSION_NAMES = ["第一场次", "第二场次", "第三场次", "第四场次", "第五场次", "第六场次", "第七场次", "第八场次"]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鑫斌宇浩凯健俊帆帅旭宁龙林欣"
    "怡佳雪琳晨辰瑶婷倩颖博文轩子涵梓萱一诺欣怡雨彤思远国庆建国志强海燕春梅晓东建华卫东永刚玉兰凤英淑珍"
)

SUBJECTS = [
    ("0101", "电工（四级）理论知识"),
    ("0102", "电工（四级）技能操作"),
    ("0201", "计算机程序设计员（三级）理论知识"),
    ("0301", "育婴员（四级）理论知识"),
    ("0401", "保育师（四级）理论知识"),
    ("0501", "中式烹调师（四级）理论知识"),
    ("0601", "网络与信息安全管理员（四级）理论知识"),
    ("0701", "评茶员（四级）理论知识"),
    ("0801", "企业人力资源管理师（三级）理论知识"),
    ("0901", "电子商务师（四级）理论知识"),
]

SITE_NAMES = ["市职业技能鉴定中心考点", "第一职业技术学校考点", "城市职业学院考点", "技师学院考点"]

#: the drill mode's demo day (``kd.platform.simdata.SimData`` arguments; see the module docstring)
DRILL_DAY: Dict[str, Any] = {"rooms": 30, "sessions": 2, "first_start_in": 20, "duration": 10, "gap": 5}


def day_fits_one_sync(sessions: List[Dict[str, Any]], window_min: int = 60) -> bool:
    """Whether one sync made before the first start lies within ``window_min`` minutes before
    every session's start (the 授权验证 rule), i.e. the last start is within the window after the first."""
    starts = sorted(datetime.datetime.fromisoformat(s["start"]) for s in sessions)
    return not starts or starts[-1] - starts[0] < datetime.timedelta(minutes=window_min)


def iso(moment: datetime.datetime) -> str:
    """ISO 8601 with seconds and the UTC offset, e.g. ``2026-11-26T09:00:00+08:00``."""
    return moment.replace(microsecond=0).isoformat()


def _name(rng: random.Random) -> str:
    given_len = 1 if rng.random() < 0.3 else 2
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(given_len))


def _id_card(rng: random.Random, site_code: str) -> str:
    """An 18-character resident ID number with a valid check digit (fictional person)."""
    region = (site_code + "0000")[:2] + "0102"
    birth = datetime.date(1970, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 36))
    body = region + birth.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    return body + check


def make_site(
    site_code: str = "11003",
    rooms: int = 30,
    sessions: int = 2,
    candidates: int = 40,
    first_start: Optional[datetime.datetime] = None,
    duration: int = 90,
    gap: int = 60,
) -> Dict[str, Any]:
    """A whole demo site: ``rooms`` rooms, ``sessions`` sessions, ``candidates`` per room and session.

    ``first_start`` (aware) is the start of the first session; later sessions follow at
    ``duration + gap`` minutes. Raises ``ValueError`` for impossible sizes.
    """
    if not (site_code.isdigit() and 3 <= len(site_code) <= 8):
        raise ValueError("site code must be 3-8 digits")
    if not (1 <= rooms <= 999 and 1 <= sessions <= len(SESSION_NAMES) and 1 <= candidates <= 99):
        raise ValueError("rooms 1-999, sessions 1-8, candidates 1-99")
    rng = random.Random("kaodian-demo-" + site_code)
    if first_start is None:
        first_start = datetime.datetime.now(CHINA).replace(second=0, microsecond=0) + datetime.timedelta(hours=1)
    subjects = list(SUBJECTS)
    rng.shuffle(subjects)
    room_list = [
        {"code": f"{site_code}{i:03d}", "name": f"第{i}考场", "seats": candidates}
        for i in range(1, rooms + 1)
    ]
    session_list: List[Dict[str, Any]] = []
    used: Dict[str, str] = {}
    for n in range(1, sessions + 1):
        # the last session of a multi-session day carries two subjects (科目1/科目2)
        count = 2 if sessions > 1 and n == sessions else 1
        picked = [subjects[(2 * n + k) % len(subjects)] for k in range(count)]
        for code, name in picked:
            used.setdefault(code, name)
        start = first_start + datetime.timedelta(minutes=(n - 1) * (duration + gap))
        session_list.append(
            {
                "id": str(n),
                "name": SESSION_NAMES[n - 1],
                "start": iso(start),
                "duration_min": duration,
                "subjects": [c for c, _nm in picked],
            }
        )
    people: List[Dict[str, Any]] = []
    year = first_start.strftime("%y")
    for session in session_list:
        codes = session["subjects"]
        for room in room_list:
            for seat in range(1, candidates + 1):
                subject = codes[0] if len(codes) == 1 or seat <= (candidates + 1) // 2 else codes[1]
                people.append(
                    {
                        "ticket": "{}{}{}{:02d}".format(year, room["code"], session["id"], seat),
                        "name": _name(rng),
                        "id_card": _id_card(rng, site_code),
                        "room": room["code"],
                        "seat": seat,
                        "session": session["id"],
                        "subject": subject,
                    }
                )
    return {
        "site_code": site_code,
        "site_name": rng.choice(SITE_NAMES),
        "exam_name": f"{first_start.year}年职业技能等级认定（机考）",
        "rooms": room_list,
        "subjects": [{"code": c, "name": nm} for c, nm in sorted(used.items())],
        "sessions": session_list,
        "candidates": people,
    }


def room_file(site: Dict[str, Any], room_code: str, size: int = 1024 * 1024) -> bytes:
    """The room data file of ``room_code`` (``kd-room-data/1``, about ``size`` bytes, deterministic)."""
    people = [c for c in site["candidates"] if c["room"] == room_code]
    head = {
        "format": "kd-room-data/1",
        "site_code": site["site_code"],
        "room": room_code,
        "sessions": [{k: s[k] for k in ("id", "name", "start", "duration_min", "subjects")} for s in site["sessions"]],
        "candidates": people,
    }
    text = json.dumps(head, ensure_ascii=False, sort_keys=True)
    pad = max(0, size - len(text.encode("utf-8")) - 16)
    raw_len = pad * 3 // 4
    rng = random.Random("kaodian-room-" + room_code)
    blob = rng.getrandbits(8 * raw_len).to_bytes(raw_len, "big") if raw_len else b""
    head["paper"] = base64.b64encode(blob).decode("ascii")
    return json.dumps(head, ensure_ascii=False, sort_keys=True).encode("utf-8")
