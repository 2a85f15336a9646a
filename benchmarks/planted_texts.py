"""Non-Azerbaijani paragraphs written by this project, planted into synthetic corpora.

Turkish is the hard case (closest language, shares most of the alphabet); English and
Russian are easy ones. benchmarks/data_prepare.py mutates them (word drops, shuffled
sentences) so each planted document is distinct.
"""

TURKISH = [
    "Bugün sabah erkenden kalktım ve kahvaltıdan sonra parka yürüyüşe çıktım. Hava oldukça serin "
    "olmasına rağmen güneş parlıyordu. Parkta köpeğini gezdiren yaşlı bir adamla sohbet ettim; bana "
    "gençliğinde bu mahallenin nasıl olduğunu anlattı. Eskiden burada büyük bir bostan varmış ve "
    "çocuklar yaz boyunca orada oynarmış. Şimdi ise her yer apartmanlarla dolu.",
    "Belediye, şehir merkezindeki trafik sorununu çözmek için yeni bir toplu taşıma planı açıkladı. "
    "Plana göre önümüzdeki iki yıl içinde üç yeni metro hattı yapılacak ve otobüs seferleri "
    "sıklaştırılacak. Yetkililer, bu sayede günlük yolculuk süresinin ortalama yirmi dakika "
    "kısalacağını söylüyor. Ancak bazı uzmanlar, projenin maliyetinin çok yüksek olduğunu belirtiyor.",
    "Türk mutfağı, zengin çeşitliliği ve köklü geçmişiyle dünyanın en önemli mutfaklarından biri "
    "kabul edilir. Zeytinyağlı yemekler, kebaplar, börekler ve tatlılar bu mutfağın temel "
    "taşlarıdır. Her bölgenin kendine özgü lezzetleri vardır: Karadeniz'de hamsi, Güneydoğu'da "
    "ise baharatlı etler öne çıkar. Misafirperverlik de sofra kültürünün ayrılmaz bir parçasıdır.",
    "Yapay zekâ teknolojileri son yıllarda hızla gelişiyor ve günlük hayatımızın birçok alanına "
    "giriyor. Telefonlarımızdaki sesli asistanlar, çeviri uygulamaları ve öneri sistemleri bunun "
    "en bilinen örnekleridir. Öte yandan bu teknolojilerin mahremiyet ve istihdam üzerindeki "
    "etkileri de tartışılıyor. Uzmanlar, düzenlemelerin teknolojiyle aynı hızda ilerlemesi "
    "gerektiğini vurguluyor.",
    "Kütüphaneye gittiğimde aradığım kitabı bulamadım, çünkü başka biri ödünç almıştı. Görevli "
    "bana kitabın iki hafta sonra geri geleceğini söyledi ve adımı bekleme listesine yazdı. "
    "Bu arada rafların arasında dolaşırken eski bir gezi kitabı dikkatimi çekti. Yazar, yüz yıl "
    "önce Anadolu'yu at sırtında dolaşmış ve gördüğü köyleri ayrıntılı biçimde anlatmış.",
    "Öğrenciler sınav haftasında kütüphanede sabahtan akşama kadar ders çalışıyor. Kantin her "
    "zamankinden daha kalabalık ve çay ocağının önünde uzun kuyruklar oluşuyor. Bazı öğrenciler "
    "grup halinde çalışmayı tercih ederken, diğerleri kulaklıklarını takıp tek başına ders "
    "çalışıyor. Hepsinin ortak dileği ise bir an önce tatile çıkmak.",
    "Deprem bölgesinde yeniden yapılanma çalışmaları devam ediyor. Yıkılan binaların yerine "
    "daha sağlam ve modern konutlar inşa ediliyor. Mühendisler, yeni yapıların en güncel deprem "
    "yönetmeliğine uygun olarak tasarlandığını belirtiyor. Bölge halkı ise bir an önce evlerine "
    "dönmek ve normal hayatlarına kavuşmak istiyor.",
    "Futbol takımımız dün akşamki maçı son dakikada attığı golle kazandı. Stadyumu dolduran "
    "taraftarlar maç boyunca takımlarını hiç susmadan destekledi. Teknik direktör, maçtan sonra "
    "yaptığı açıklamada oyuncularının mücadele gücünü övdü. Takım, bu galibiyetle ligde ikinci "
    "sıraya yükseldi ve şampiyonluk umutlarını sürdürdü.",
]

ENGLISH = [
    "The committee met on Tuesday to review the annual budget and discuss the plans for the new "
    "community library. Several members raised concerns about the rising cost of construction "
    "materials, while others argued that the project would pay for itself within a decade. The "
    "final decision was postponed until the next meeting in March.",
    "Learning a new language takes patience and daily practice. Many people find it helpful to "
    "listen to podcasts, read short stories and speak with native speakers whenever they can. "
    "Mistakes are a natural part of the process, and most teachers encourage students to keep "
    "talking even when they are not sure of the right word.",
    "The old railway station has been turned into a museum of local history. Visitors can see "
    "photographs of the town from the nineteenth century, tools used by the first farmers and a "
    "restored steam locomotive. The museum is open every day except Monday, and entry is free "
    "for children and students.",
]

RUSSIAN = [
    "Вчера вечером в городском парке прошёл концерт местного оркестра. Несмотря на прохладную "
    "погоду, собралось много зрителей, которые тепло встречали музыкантов. Организаторы обещают, "
    "что такие концерты будут проходить каждое воскресенье до конца лета.",
]
