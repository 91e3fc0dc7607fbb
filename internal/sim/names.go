package sim

// name is a given name or surname in its native script with an ASCII form used for mail aliases.
type name struct{ native, ascii string }

// locale groups names of one language with the way display names are written and a phone format.
type locale struct {
	given, surnames []name
	// surnameFirst writes "Surname Given" without a space (Chinese) when true.
	surnameFirst bool
	lang         string
	phone        func(r *rng) string
}

func n(native, ascii string) name { return name{native, ascii} }

func latin(s ...string) []name {
	out := make([]name, len(s))
	for i, v := range s {
		out[i] = name{v, fold(v)}
	}
	return out
}

// fold maps accented Latin letters to ASCII for mail aliases.
func fold(s string) string {
	repl := map[rune]string{
		'á': "a", 'à': "a", 'â': "a", 'ä': "a", 'ã': "a", 'å': "a", 'ą': "a", 'Á': "A", 'Å': "A", 'Ä': "A",
		'é': "e", 'è': "e", 'ê': "e", 'ë': "e", 'ę': "e", 'É': "E",
		'í': "i", 'ì': "i", 'î': "i", 'ï': "i", 'Í': "I",
		'ó': "o", 'ò': "o", 'ô': "o", 'ö': "o", 'õ': "o", 'ø': "o", 'Ö': "O", 'Ø': "O",
		'ú': "u", 'ù': "u", 'û': "u", 'ü': "u", 'Ü': "U",
		'ñ': "n", 'ń': "n", 'ç': "c", 'ć': "c", 'č': "c", 'Č': "C", 'ł': "l", 'Ł': "L",
		'ś': "s", 'š': "s", 'Š': "S", 'ż': "z", 'ź': "z", 'ž': "z", 'Ž': "Z", 'ß': "ss", 'æ': "ae",
		'ğ': "g", 'ı': "i", 'ş': "s", 'Ş': "S", 'İ': "I", 'ř': "r", 'ý': "y", 'ő': "o", 'ű': "u",
	}
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 128 {
			if r != ' ' && r != '\'' {
				out = append(out, byte(r))
			}
			continue
		}
		out = append(out, repl[r]...)
	}
	return string(out)
}

func phoneFmt(prefix string, groups ...int) func(r *rng) string {
	return func(r *rng) string {
		s := prefix
		for _, g := range groups {
			s += " "
			for range g {
				s += string(rune('0' + r.IntN(10)))
			}
		}
		return s
	}
}

var locales = []struct {
	weight int
	loc    locale
}{
	{40, locale{
		given:    latin("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "William", "Susan", "Adele", "Grady", "Lynne", "Megan", "Nestor", "Isaiah", "Alex", "Diego", "Joni", "Lee", "Miriam", "Pradeep", "Oscar", "Cameron", "Preston", "Joseph"),
		surnames: latin("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Vance", "Archie", "Robbins", "Bowen", "Wilke", "Henderson", "Wilber", "Siciliani", "Sherman", "Adams", "Graham", "Gupta", "Ward", "White", "Price", "Morales", "O'Brien"),
		lang:     "en-US", phone: phoneFmt("+1", 3, 3, 4),
	}},
	{8, locale{
		given:    latin("José", "María", "Lucía", "Andrés", "Sofía", "Martín", "Inés", "Ramón", "Begoña", "Íñigo"),
		surnames: latin("García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Muñoz", "Díaz", "Álvarez"),
		lang:     "es-ES", phone: phoneFmt("+34", 3, 3, 3),
	}},
	{8, locale{
		given:    latin("Jürgen", "Lukas", "Zoë", "Jörg", "Mathilde", "Björn", "Renée", "Élodie", "François", "Gaëlle", "Anaïs", "Günther"),
		surnames: latin("Müller", "Schäfer", "Weiß", "Groß", "Lefèvre", "Dubois", "Fontaine", "Béranger", "Krüger", "Nöth"),
		lang:     "de-DE", phone: phoneFmt("+49", 30, 7),
	}},
	{6, locale{
		given:    latin("Łukasz", "Małgorzata", "Søren", "Åsa", "Ørjan", "Zoltán", "Dušan", "Agnieszka", "Çağla", "Kübra"),
		surnames: latin("Wiśniewski", "Kowalczyk", "Jørgensen", "Ångström", "Nagy", "Novák", "Dvořák", "Yılmaz", "Şahin", "Lindqvist"),
		lang:     "pl-PL", phone: phoneFmt("+48", 3, 3, 3),
	}},
	{8, locale{
		given:        []name{n("伟", "Wei"), n("芳", "Fang"), n("秀英", "Xiuying"), n("娜", "Na"), n("敏", "Min"), n("静", "Jing"), n("磊", "Lei"), n("洋", "Yang"), n("杰", "Jie"), n("婷", "Ting")},
		surnames:     []name{n("王", "Wang"), n("李", "Li"), n("张", "Zhang"), n("刘", "Liu"), n("陈", "Chen"), n("杨", "Yang"), n("赵", "Zhao"), n("黄", "Huang"), n("周", "Zhou"), n("吴", "Wu")},
		surnameFirst: true,
		lang:         "zh-CN", phone: phoneFmt("+86", 3, 4, 4),
	}},
	{7, locale{
		given:    []name{n("Иван", "Ivan"), n("Мария", "Maria"), n("Дмитрий", "Dmitry"), n("Анна", "Anna"), n("Сергей", "Sergey"), n("Ольга", "Olga"), n("Алексей", "Alexey"), n("Наталья", "Natalya"), n("Юлия", "Yulia")},
		surnames: []name{n("Петров", "Petrov"), n("Иванов", "Ivanov"), n("Смирнов", "Smirnov"), n("Кузнецов", "Kuznetsov"), n("Попов", "Popov"), n("Соколов", "Sokolov"), n("Лебедев", "Lebedev"), n("Новиков", "Novikov")},
		lang:     "ru-RU", phone: phoneFmt("+7", 3, 3, 4),
	}},
	{7, locale{
		given:    []name{n("محمد", "Mohammed"), n("فاطمة", "Fatima"), n("أحمد", "Ahmed"), n("عائشة", "Aisha"), n("علي", "Ali"), n("مريم", "Maryam"), n("يوسف", "Youssef"), n("ليلى", "Layla")},
		surnames: []name{n("العلي", "AlAli"), n("حسن", "Hassan"), n("الحربي", "AlHarbi"), n("منصور", "Mansour"), n("خليل", "Khalil"), n("سعيد", "Saeed"), n("عبدالله", "Abdullah")},
		lang:     "ar-AE", phone: phoneFmt("+971", 2, 3, 4),
	}},
	{4, locale{
		given:    []name{n("Γιώργος", "Giorgos"), n("Ελένη", "Eleni"), n("Νίκος", "Nikos"), n("Μαρία", "Maria")},
		surnames: []name{n("Παπαδόπουλος", "Papadopoulos"), n("Οικονόμου", "Oikonomou"), n("Γεωργίου", "Georgiou")},
		lang:     "el-GR", phone: phoneFmt("+30", 3, 3, 4),
	}},
	{4, locale{
		given:        []name{n("翔太", "Shota"), n("さくら", "Sakura"), n("健", "Ken"), n("美咲", "Misaki")},
		surnames:     []name{n("佐藤", "Sato"), n("鈴木", "Suzuki"), n("高橋", "Takahashi"), n("田中", "Tanaka")},
		surnameFirst: true,
		lang:         "ja-JP", phone: phoneFmt("+81", 3, 4, 4),
	}},
	{4, locale{
		given:    []name{n("Aarav", "Aarav"), n("Priya", "Priya"), n("Rohan", "Rohan"), n("Ananya", "Ananya")},
		surnames: []name{n("Sharma", "Sharma"), n("Patel", "Patel"), n("Iyer", "Iyer"), n("Reddy", "Reddy")},
		lang:     "en-IN", phone: phoneFmt("+91", 5, 5),
	}},
}

var (
	departments = []string{"Sales", "Marketing", "Engineering", "Finance", "Human Resources", "Legal", "Operations", "Support", "Research", "Procurement", "IT", "Logistics"}
	jobTitles   = []string{"Account Manager", "Software Engineer", "Support Specialist", "Financial Analyst", "HR Generalist", "Counsel", "Operations Manager", "Designer", "Retail Manager", "Marketing Assistant", "Team Lead", "Director", "Intern", "Consultant", "Technician", "Product Manager"}
	offices     = []string{"18/2111", "20/1109", "131/1104", "23/2102", "Berlin 3.14", "Paris La Défense", "上海 12F", "Dubai Marina 7", "Remote"}
	cities      = []string{"Seattle", "Redmond", "Berlin", "Madrid", "Paris", "Shanghai", "Moscow", "Dubai", "Athens", "Tokyo", "Bangalore", "Warsaw"}
	companies   = []string{"Fabrikam", "Northwind Traders", "Litware", "Tailspin Toys", "Wingtip Toys", "Adventure Works", "Woodgrove Bank", "Proseware", "Trey Research", "Alpine Ski House", "Coho Winery", "Lamna Healthcare"}
	groupTopics = []string{"All Company", "Video Production", "Sales", "Marketing", "Engineering", "Finance", "HR", "Legal", "Operations", "Support", "Research", "Project Phoenix", "Project Atlas", "Helpdesk", "Reception", "Management", "Night Shift", "Field Team", "Warehouse", "Golf Club", "Café Crew", "Ventes Europe", "研发", "Отдел продаж", "فريق الدعم"}
	extDomains  = []string{"fabrikam.com", "outlook.com", "gmail.com", "litware.io", "northwind.example", "adatum.net"}
)
