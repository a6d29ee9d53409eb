// i18n.js: the app's words in Korean and English, the language choice and
// date/time formats. Korean is chosen when the browser prefers it over
// English; the user's switch is remembered.

const LANG_KEY = "salamander.lang";

const words = {
  en: {
    appName: "Salamander",
    tagline: "A messenger that keeps talking when a data center burns.",
    logIn: "Log in", signUp: "Sign up", logOut: "Log out",
    userName: "User name", displayName: "Display name", password: "Password",
    statusMessage: "Status message",
    noAccount: "New here?", haveAccount: "Already have an account?",
    createAccount: "Create an account",
    userNameHint: "3–32 characters: a–z, 0–9, _ . -",
    passwordHint: "At least 8 characters",
    friends: "Friends", chats: "Chats", settings: "Settings",
    addFriend: "Add friend", addFriendPrompt: "Friend's user name", add: "Add",
    newGroup: "New group", groupName: "Group name", chooseMembers: "Members",
    create: "Create", cancel: "Cancel", save: "Save", close: "Close",
    noFriends: "No friends yet. Add one by their user name.",
    noChats: "No chats yet. Pick a friend to start one.",
    me: "Me", online: "online", offline: "offline",
    editProfile: "Edit profile", profileSaved: "Profile saved",
    changePassword: "Change password", currentPassword: "Current password", newPassword: "New password",
    confirmPassword: "New password again", passwordsDiffer: "The two new passwords differ.",
    currentPasswordWrong: "The current password is wrong.",
    passwordChanged: "Password changed. Every other device of yours is signed out.",
    chat: "1:1 chat",
    pickChat: "Choose a chat, or a friend to talk to.",
    typeMessage: "Message", send: "Send", emoji: "Emoji",
    sending: "sending", notSent: "waiting to send",
    sentHeld: "Sent · waiting for its place (a site is failing over)",
    typing: (n) => `${n} is typing…`,
    members: (n) => `${n} members`,
    invite: "Invite", rename: "Rename", leave: "Leave room",
    leaveConfirm: "Leave this room? Its messages stay with the others.",
    roomName: "Room name", roomSettings: "Room settings", back: "Back",
    today: "Today", yesterday: "Yesterday",
    unreadLabel: (n) => `${n} unread`,
    unreadBy: (n) => `${n} not read yet`,
    loadingOlder: "Loading earlier messages…", beginning: "The beginning of this chat",
    connLive: (site) => `Connected · site ${site}`,
    connConnecting: "Connecting…",
    connMoving: "Moving to another site…",
    connOffline: "Offline · trying every site",
    connTooManySockets: "Disconnected: this account is open on too many devices",
    connReconnect: "Reconnect",
    waiting: (n) => `${n} unsent`,
    siteLabel: "Site",
    incident: "Service notice", statusPage: "Status page",
    language: "Language", theme: "Theme", themeAuto: "System", themeLight: "Light", themeDark: "Dark",
    langName: "English",
    sendFailed: (why) => `Not sent: ${why}`,
    unsentOnLogOut: (n) => `${n} message(s) no site has taken yet will be lost if you log out now. Log out anyway?`,
    suspended: "This account is suspended: it cannot log in or use its sessions. Ask the service's operators why.",
    tooLong: (n, max) => `Too long to send: ${n} bytes, at most ${max} (a Hangul syllable or an emoji takes 3-4). Shorten it or split it.`,
    notQueued: "Could not keep the message: this browser's storage is full. What you typed is still there.",
    created: (who) => `${who} created the room`,
    joined: (who) => `${who} joined`,
    left: (who) => `${who} left`,
    renamed: (who, name) => `${who} named the room “${name}”`,
    you: "You", startChat: "Chat",
    errorGeneric: "Something went wrong. Try again.",
    emojiPicker: "Emoji picker",
    messageList: "Messages", chatList: "Chats", friendList: "Friends",
  },
  ko: {
    appName: "살라만더",
    tagline: "데이터센터에 불이 나도 대화는 이어집니다.",
    logIn: "로그인", signUp: "가입하기", logOut: "로그아웃",
    userName: "아이디", displayName: "이름", password: "비밀번호",
    statusMessage: "상태 메시지",
    noAccount: "처음이신가요?", haveAccount: "이미 계정이 있나요?",
    createAccount: "계정 만들기",
    userNameHint: "3–32자: a–z, 0–9, _ . -",
    passwordHint: "8자 이상",
    friends: "친구", chats: "채팅", settings: "설정",
    addFriend: "친구 추가", addFriendPrompt: "친구 아이디", add: "추가",
    newGroup: "새 그룹", groupName: "그룹 이름", chooseMembers: "멤버",
    create: "만들기", cancel: "취소", save: "저장", close: "닫기",
    noFriends: "아직 친구가 없습니다. 아이디로 친구를 추가해 보세요.",
    noChats: "아직 채팅이 없습니다. 친구를 골라 대화를 시작해 보세요.",
    me: "나", online: "온라인", offline: "오프라인",
    editProfile: "프로필 편집", profileSaved: "프로필을 저장했습니다",
    changePassword: "비밀번호 변경", currentPassword: "현재 비밀번호", newPassword: "새 비밀번호",
    confirmPassword: "새 비밀번호 확인", passwordsDiffer: "새 비밀번호가 서로 다릅니다.",
    currentPasswordWrong: "현재 비밀번호가 맞지 않습니다.",
    passwordChanged: "비밀번호를 바꿨습니다. 다른 기기는 모두 로그아웃되었습니다.",
    chat: "1:1 채팅",
    pickChat: "채팅방이나 대화할 친구를 고르세요.",
    typeMessage: "메시지 입력", send: "전송", emoji: "이모티콘",
    sending: "전송 중", notSent: "전송 대기",
    sentHeld: "전송됨 · 순서를 기다리는 중 (사이트 전환 중)",
    typing: (n) => `${n}님이 입력 중…`,
    members: (n) => `${n}명`,
    invite: "초대하기", rename: "이름 바꾸기", leave: "나가기",
    leaveConfirm: "채팅방을 나갈까요? 메시지는 다른 멤버에게 남습니다.",
    roomName: "채팅방 이름", roomSettings: "채팅방 설정", back: "뒤로",
    today: "오늘", yesterday: "어제",
    unreadLabel: (n) => `안 읽은 메시지 ${n}개`,
    unreadBy: (n) => `${n}명이 아직 읽지 않음`,
    loadingOlder: "이전 메시지를 불러오는 중…", beginning: "대화의 시작입니다",
    connLive: (site) => `연결됨 · 사이트 ${site}`,
    connConnecting: "연결 중…",
    connMoving: "다른 사이트로 이동 중…",
    connOffline: "오프라인 · 모든 사이트에 연결 시도 중",
    connTooManySockets: "연결 끊김: 이 계정이 너무 많은 기기에서 열려 있습니다",
    connReconnect: "다시 연결",
    waiting: (n) => `보내지 못한 메시지 ${n}개`,
    siteLabel: "사이트",
    incident: "서비스 공지", statusPage: "상태 페이지",
    language: "언어", theme: "테마", themeAuto: "시스템", themeLight: "밝게", themeDark: "어둡게",
    langName: "한국어",
    sendFailed: (why) => `전송 실패: ${why}`,
    unsentOnLogOut: (n) => `아직 보내지 못한 메시지 ${n}개는 지금 로그아웃하면 사라집니다. 그래도 로그아웃할까요?`,
    "err.invalid_request": "요청이 올바르지 않습니다.",
    "err.too_large": "너무 깁니다.",
    "err.unauthorized": "이름이나 비밀번호가 맞지 않거나 로그인이 끝났습니다.",
    "err.forbidden": "권한이 없습니다. 대화방의 멤버가 아니거나 정지된 계정입니다.",
    "err.not_found": "찾을 수 없습니다.",
    "err.conflict": "이미 있습니다. 예를 들어 이미 사용 중인 이름입니다.",
    "err.unavailable": "지금은 이 사이트가 처리할 수 없습니다. 잠시 후 다시 시도하세요.",
    "err.internal": "서버에 오류가 있었습니다. 잠시 후 다시 시도하세요.",
    "err.too_many_requests": "요청이 너무 많습니다. 잠시 후 다시 시도하세요.",
    suspended: "이 계정은 정지되었습니다. 로그인하거나 세션을 사용할 수 없습니다. 자세한 내용은 서비스 운영자에게 문의하세요.",
    tooLong: (n, max) => `너무 길어서 보낼 수 없습니다: ${n}바이트, 최대 ${max}바이트 (한글과 이모지는 글자당 더 많이 차지합니다). 줄이거나 나눠 보내세요.`,
    notQueued: "브라우저 저장 공간이 가득 차서 메시지를 보관할 수 없습니다. 입력한 내용은 그대로 있습니다.",
    created: (who) => `${who}님이 채팅방을 만들었습니다`,
    joined: (who) => `${who}님이 들어왔습니다`,
    left: (who) => `${who}님이 나갔습니다`,
    renamed: (who, name) => `${who}님이 채팅방 이름을 “${name}”(으)로 바꿨습니다`,
    you: "나", startChat: "1:1 채팅",
    errorGeneric: "문제가 생겼습니다. 다시 시도해 주세요.",
    emojiPicker: "이모티콘 고르기",
    messageList: "메시지", chatList: "채팅 목록", friendList: "친구 목록",
  },
};

// preferredLang is the remembered choice, or Korean when the browser
// lists Korean before English, or English.
function preferredLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved === "ko" || saved === "en") return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const base = l.toLowerCase().slice(0, 2);
    if (base === "ko" || base === "en") return base;
  }
  return "en";
}

let lang = preferredLang();

export function currentLang() { return lang; }

export function setLang(l) {
  lang = l === "ko" ? "ko" : "en";
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang;
}

// errorText is what to tell the reader of an API error: the site's own
// message where it speaks the reader's language (English), else what the
// error's code means in theirs.
export function errorText(err) {
  const w = lang === "en" ? undefined : words[lang]["err." + err.code];
  return w ?? (err.message || t("errorGeneric"));
}

// t returns the word for key; a function word is called with args.
export function t(key, ...args) {
  const w = words[lang][key] ?? words.en[key] ?? key;
  return typeof w === "function" ? w(...args) : w;
}

// localized picks the reader's language from a {en, ko} text, falling back
// to the other.
export function localized(text) {
  if (!text) return "";
  return text[lang] || text.en || text.ko || "";
}

const locale = () => (lang === "ko" ? "ko-KR" : "en-US");

export function fmtTime(iso) {
  return new Date(iso).toLocaleTimeString(locale(), { hour: "numeric", minute: "2-digit" });
}

// fmtDay is "Today", "Yesterday" or the date, for a day divider.
export function fmtDay(iso) {
  const d = new Date(iso), now = new Date();
  const days = Math.round((startOfDay(now) - startOfDay(d)) / 86400000);
  if (days === 0) return t("today");
  if (days === 1) return t("yesterday");
  return d.toLocaleDateString(locale(), { year: "numeric", month: "long", day: "numeric", weekday: "short" });
}

// fmtWhen is a chat list's time: the time today, else the date.
export function fmtWhen(iso) {
  if (!iso) return "";
  const d = new Date(iso), now = new Date();
  if (startOfDay(d) === startOfDay(now)) return fmtTime(iso);
  if (startOfDay(now) - startOfDay(d) === 86400000) return t("yesterday");
  return d.toLocaleDateString(locale(), { month: "short", day: "numeric" });
}

export function dayKey(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function startOfDay(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}
